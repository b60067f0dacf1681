/**
 * The operator's way of writing a time: a duration ("90s", "30m", "12h", "3d") or an ISO 8601 time
 * ("2026-12-01T08:00:00Z"). deliverBy and runBy (parse.ts) count a duration forward from now, `steward status
 * --since` (filter.ts) back from now; each caller keeps its own bounds and error message.
 */

/** Milliseconds per unit of a duration. */
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * `text` as `{ durationMs }` ("90s", "30m", "12h", "3d"; a number alone is seconds; spaces around it or before
 * the unit are allowed) or `{ at }` (an ISO 8601 time such as "2026-12-01T08:00:00Z", ms since the epoch), or
 * undefined when it is neither.
 */
export function durationOrTime(text: string): { durationMs: number } | { at: number } | undefined {
  const t = text.trim();
  const duration = /^(\d+)\s*([smhd]?)$/.exec(t);
  if (duration) return { durationMs: Number(duration[1]) * (UNIT_MS[duration[2] || "s"] as number) };
  const at = /^\d{4}-\d\d-\d\d/.test(t) ? Date.parse(t) : NaN;
  return Number.isNaN(at) ? undefined : { at };
}
