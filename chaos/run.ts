/**
 * `npm run chaos`: every fault scenario at full size, then a table of what
 * happened to the messages. `npm run chaos -- --short` runs the CI sizes;
 * `npm run chaos -- brokerKill leafCut` runs only the named scenarios.
 * Exit status 1 when any message was lost or run twice.
 */
import { table } from "./lib/report.js";
import type { Figures } from "./lib/tally.js";
import { SCENARIOS } from "./scenarios/index.js";

const args = process.argv.slice(2);
const short = args.includes("--short");
const only = args.filter((a) => !a.startsWith("--"));
const chosen = SCENARIOS.filter((s) => only.length === 0 || only.includes(s.name));
const results: Figures[] = [];
const t0 = Date.now();
for (const s of chosen) {
  const size = short ? s.short : s.full;
  process.stderr.write(`\n== ${s.name}: ${s.title} (${JSON.stringify(size)})\n`);
  const fig = await s.run(size, (line) => process.stderr.write(`   ${line}\n`));
  results.push(fig);
  for (const p of fig.problems) process.stderr.write(`   PROBLEM ${p}\n`);
  process.stderr.write(`   ${fig.seconds}s\n`);
}
const command = `npm run chaos${args.length ? ` -- ${args.join(" ")}` : ""}`;
process.stdout.write(
  `\n${table(results)}\n\nCommand: \`${command}\` — ${Math.round((Date.now() - t0) / 1000)} s in all, ${new Date().toISOString()}\n`,
);
process.exitCode = results.some((f) => !f.skipped && (f.lost > 0 || f.double > 0 || !f.answering)) ? 1 : 0;
