/** Timers that respect Node's limit and an AbortSignal. */

/** Longest delay a Node.js timer takes (2^31-1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Longest time in seconds a timer can wait in Node.js (about 24.8 days): the most any seconds field takes. */
export const MAX_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** Wait `ms` (clamped to what a timer can take), or less when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
    signal.addEventListener("abort", done, { once: true });
  });
}
