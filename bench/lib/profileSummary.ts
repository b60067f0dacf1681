/**
 * Where the time goes in a CPU profile (`node --cpu-prof`): self time per
 * function and per origin (Steward's code, SQLite, nats.js, Node itself).
 *
 *   node --import tsx bench/lib/profileSummary.ts FILE.cpuprofile [TOP]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function origin(url: string, fn: string): string {
  if (url === "") return fn.startsWith("(") ? fn : "native (V8 builtins, bindings: SQLite, fs, sockets)";
  if (url.includes("better-sqlite3")) return "better-sqlite3 (JS side)";
  if (url.includes("@nats-io")) return "nats.js";
  if (url.includes("/src/") || url.includes("/dist/")) return `steward ${url.replace(/^.*\/(src|dist)\//, "")}`;
  if (url.startsWith("node:")) return "node internals";
  return url.replace(/^.*node_modules\//, "");
}

export function summarize(path: string, top = 25): string {
  const p = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const byFn = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)?.callFrame;
    if (!f) continue;
    const fn = f.functionName || "(anonymous)";
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules|src|dist)\//, "$1/")}:${f.lineNumber + 1}` : "";
    const key = `${fn} ${where}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const o = origin(f.url, fn);
    byOrigin.set(o, (byOrigin.get(o) ?? 0) + us);
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  const lines = [`${path}: ${(total / 1e6).toFixed(1)} s sampled`, "", "self time by origin:"];
  for (const [k, us] of [...byOrigin].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`  ${pct(us)}  ${k}`);
  lines.push("", `top ${top} functions by self time:`);
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`  ${pct(us)}  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`);
  return lines.join("\n");
}

const [file, top] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: profileSummary.ts FILE.cpuprofile [TOP]\n");
  process.exit(2);
}
process.stdout.write(`${summarize(file, top ? Number(top) : 25)}\n`);
