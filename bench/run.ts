/**
 * `npm run bench`: every measurement of docs/PERFORMANCE.md in one run, each
 * against its baseline side by side, then one table. Figures only: nothing
 * here fails on a timing.
 *
 *   npm run bench                               all of them
 *   npm run bench -- --only roundTrip,fanout    some of them
 *   npm run bench -- --json results.json        also write the rows as JSON
 *   npm run bench -- --only soak [--soak-messages N] [--soak-rate R]   the soak (long: only when named)
 */
import { writeFileSync } from "node:fs";
import { ansible } from "./ansible.js";
import { commands } from "./commands.js";
import { copy } from "./copy.js";
import { fanout } from "./fanout.js";
import { footprint } from "./footprint.js";
import { fmt, machine, msSince, now, type Row } from "./lib/common.js";
import { roundTrip } from "./roundTrip.js";
import { signing } from "./signing.js";
import { soak } from "./soak.js";
import { throughput } from "./throughput.js";

const BENCHES: Record<string, () => Promise<Row[]>> = {
  roundTrip: () => roundTrip(),
  throughput: () => throughput(),
  commands: () => commands(),
  fanout: () => fanout(),
  footprint: () => footprint(),
  ansible: () => ansible(),
  signing: () => signing(),
  copy: () => copy(),
  soak: () => {
    const count = (name: string, min: number) => {
      const v = option(process.argv.slice(2), name);
      if (v !== undefined && !(/^[0-9]+$/.test(v) && Number(v) >= min))
        throw new Error(`--${name}: a whole number, ${min} or more, got "${v}"`);
      return v === undefined ? undefined : Number(v);
    };
    const messages = count("soak-messages", 1);
    const rate = count("soak-rate", 0);
    return soak({ ...(messages !== undefined && { messages }), ...(rate !== undefined && { rate }) });
  },
};

/** Run only when named in --only: a million messages take a quarter of an hour. */
const ONLY_WHEN_NAMED = new Set(["soak"]);

function option(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = argv[i] as string;
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[i + 1];
}

function table(rows: Row[]): string {
  const head = ["Measurement", "Steward", "Baseline", "Ratio", "Target", "Met?"];
  const cells = rows.map((r) => [
    r.name,
    r.steward,
    r.baseline,
    r.ratio,
    r.target,
    r.met === undefined ? "—" : r.met ? "yes" : "**no**",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)].join("\n");
}

async function main(argv: string[]): Promise<void> {
  const only = option(argv, "only")?.split(",");
  const unknown = only?.filter((n) => !(n in BENCHES)) ?? [];
  if (unknown.length > 0)
    throw new Error(`unknown benchmark ${unknown.join(", ")}; known: ${Object.keys(BENCHES).join(", ")}`);
  const m = machine();
  process.stderr.write(
    `machine: ${Object.entries(m)
      .map(([k, v]) => `${k} ${v}`)
      .join("; ")}\n`,
  );
  const rows: Row[] = [];
  for (const [name, run] of Object.entries(BENCHES)) {
    if (only ? !only.includes(name) : ONLY_WHEN_NAMED.has(name)) continue;
    process.stderr.write(`${name}… `);
    const t0 = now();
    try {
      rows.push(...(await run()));
      process.stderr.write(`${fmt(msSince(t0) / 1000, 1)} s\n`);
    } catch (err) {
      process.stderr.write(`failed: ${(err as Error).message}\n`);
      rows.push({
        name,
        steward: "error",
        baseline: "—",
        ratio: "—",
        target: "—",
        met: false,
        notes: [`${name}: ${(err as Error).message}`],
      });
    }
  }
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const r of rows) for (const n of r.notes ?? []) process.stdout.write(`- ${n}\n`);
  process.stdout.write(
    `\nMachine: ${Object.entries(m)
      .map(([k, v]) => `${k}: ${v}`)
      .join("; ")}\n`,
  );
  const json = option(argv, "json");
  if (json) writeFileSync(json, `${JSON.stringify({ machine: m, rows }, null, 2)}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
