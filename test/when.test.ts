/**
 * src/message/when.ts on its own: the durations and ISO times that deliverBy, runBy (parse.ts) and `steward
 * status --since` (filter.ts) are written in, and what is neither.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseWhen } from "../src/message/filter.js";
import { durationOrTime } from "../src/message/when.js";

test("a duration: a number then s, m, h or d, or a number alone as seconds", () => {
  assert.deepEqual(durationOrTime("90s"), { durationMs: 90_000 });
  assert.deepEqual(durationOrTime("30m"), { durationMs: 1_800_000 });
  assert.deepEqual(durationOrTime("12h"), { durationMs: 43_200_000 });
  assert.deepEqual(durationOrTime("3d"), { durationMs: 259_200_000 });
  assert.deepEqual(durationOrTime("45"), { durationMs: 45_000 });
  assert.deepEqual(durationOrTime(" 5 m "), { durationMs: 300_000 });
  assert.deepEqual(durationOrTime("0s"), { durationMs: 0 });
});

test("an ISO 8601 time, as ms since the epoch", () => {
  assert.deepEqual(durationOrTime("2026-12-01T08:00:00Z"), { at: Date.UTC(2026, 11, 1, 8) });
  assert.deepEqual(durationOrTime("2026-12-01T09:00:00+01:00"), { at: Date.UTC(2026, 11, 1, 8) });
  assert.deepEqual(durationOrTime("2026-12-01T08:00:00.250Z"), { at: Date.UTC(2026, 11, 1, 8, 0, 0, 250) });
  assert.deepEqual(durationOrTime("2026-12-01"), { at: Date.UTC(2026, 11, 1) });
});

test("anything else is neither", () => {
  for (const text of ["", "soon", "2weeks", "-5s", "1.5h", "5 minutes", "s", "2026-13-45T08:00:00Z", "12/01/2026"])
    assert.equal(durationOrTime(text), undefined, JSON.stringify(text));
});

test("--since counts a duration back from now; an ISO time is taken as it is", () => {
  const now = Date.UTC(2026, 10, 29, 12);
  assert.equal(parseWhen("90s", now), now - 90_000);
  assert.equal(parseWhen("3d", now), now - 259_200_000);
  assert.equal(parseWhen("2026-11-29T08:00:00Z", now), Date.UTC(2026, 10, 29, 8));
  assert.match(parseWhen("2weeks", now) as string, /"2weeks" is neither a duration back from now/);
});
