/**
 * The short form of the chaos suite (docs/RELIABILITY.md): every fault scenario of
 * chaos/scenarios at its small size, against real nats-servers and real nodes.
 * Each must lose nothing, run nothing twice outside guarantee 5's crash
 * window, and leave every node answering. Timings are printed, never asserted;
 * `npm run chaos` runs the full sizes and prints the table.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { table } from "../chaos/lib/report.js";
import type { Figures } from "../chaos/lib/tally.js";
import { SCENARIOS } from "../chaos/scenarios/index.js";

const results: Figures[] = [];

for (const scenario of SCENARIOS) {
  test(`chaos ${scenario.name}: ${scenario.title}`, { timeout: 240_000 }, async (t) => {
    const fig = await scenario.run(scenario.short, (line) => t.diagnostic(line));
    results.push(fig);
    if (fig.skipped) {
      t.skip(fig.skipped);
      return;
    }
    t.diagnostic(
      `recover ${fig.recoverS ?? "–"} s, drain ${fig.drainS ?? "–"} s, ${fig.seconds} s in all; ${fig.notes.join("; ")}`,
    );
    assert.equal(fig.lost, 0, `lost: ${fig.problems.join(" | ")}`);
    assert.equal(fig.double, 0, `run twice: ${fig.problems.join(" | ")}`);
    assert.ok(fig.answering, "every node still answers");
    assert.deepEqual(fig.problems, []);
    assert.ok(fig.accepted > 0, "the scenario sent messages");
  });
}

test("chaos figures", (t) => {
  for (const line of table(results).split("\n")) t.diagnostic(line);
});
