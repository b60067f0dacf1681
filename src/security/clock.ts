/**
 * The wall clock, as the replay checks read it. Delivery deadlines are hours
 * or days long, so clocks that disagree by minutes change nothing; the tests
 * prove that by running a node whose clock is off (STEWARD_TEST_CLOCK_OFFSET,
 * in seconds: read here only, and meant for tests only).
 */
const offsetMs = Number(process.env.STEWARD_TEST_CLOCK_OFFSET ?? 0) * 1000 || 0;

export function now(): number {
  return Date.now() + offsetMs;
}
