/**
 * 5. Footprint: a node process (dist/cli/main.js start, fresh folder) — time
 * from spawn until it is on the broker and ready, and its resident memory
 * after a few idle seconds — against a bare nats.js client process that
 * connects and subscribes. Rounds alternate; the median round counts.
 */
import { existsSync, readFileSync } from "node:fs";
import { Bench, fmt, median, type Row, rssMB, waitUntil } from "./lib/common.js";
import { RawResponder } from "./lib/raw.js";

export interface FootprintOptions {
  rounds?: number;
  idleMs?: number;
}

/** When the node logged `message` (its log lines start with an ISO time). */
function loggedAt(logPath: string, message: string): number | undefined {
  if (!existsSync(logPath)) return undefined;
  const line = readFileSync(logPath, "utf8")
    .split("\n")
    .find((l) => l.includes(JSON.stringify(message)));
  return line ? Date.parse(line.slice(0, line.indexOf(" "))) : undefined;
}

export async function footprint(opts: FootprintOptions = {}): Promise<Row[]> {
  const rounds = opts.rounds ?? 3;
  const idleMs = opts.idleMs ?? 5000;
  const bench = await Bench.start("footprint");
  try {
    const ready: number[] = [];
    const inputsUp: number[] = [];
    const rss: number[] = [];
    const rawReady: number[] = [];
    const rawRss: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const spawnedAt = Date.now();
      const node = await bench.processNode(`idle${r}`, "central", { logLevel: "info" });
      await waitUntil(() => loggedAt(node.logPath, "connected to broker") !== undefined, 5000, "the node's log line");
      ready.push((loggedAt(node.logPath, "connected to broker") as number) - spawnedAt);
      inputsUp.push((loggedAt(node.logPath, "ready") as number) - spawnedAt);
      const raw = await RawResponder.start(bench.broker.url, `raw${r}`);
      rawReady.push(raw.readyMs);
      await new Promise((res) => setTimeout(res, idleMs));
      rss.push(rssMB(node.pid as number));
      rawRss.push(rssMB(raw.pid));
      await raw.stop();
      await node.close();
    }
    const m = median(rss);
    const rm = median(rawRss);
    const t = median(ready);
    const rt = median(rawReady);
    return [
      {
        name: "Idle node resident memory (MB)",
        steward: fmt(m, 1),
        baseline: fmt(rm, 1),
        ratio: `${fmt(m / rm)}×`,
        target: "≤ 60 MB",
        met: m <= 60,
        notes: [
          `footprint: ${rounds} fresh nodes, RSS after ${idleMs / 1000} s idle: ${rss.map((x) => fmt(x, 1)).join(", ")} MB; ` +
            `baseline = a bare nats.js client process (node -e, connect + subscribe): ${rawRss.map((x) => fmt(x, 1)).join(", ")} MB`,
        ],
      },
      {
        name: "Start to ready, on the broker (ms)",
        steward: fmt(t, 0),
        baseline: fmt(rt, 0),
        ratio: `${fmt(t / rt)}×`,
        target: "≤ 400 ms",
        met: t <= 400,
        notes: [
          `start: spawn → log line "connected to broker": ${ready.map((x) => fmt(x, 0)).join(", ")} ms ` +
            `(inputs up, log line "ready": ${inputsUp.map((x) => fmt(x, 0)).join(", ")} ms); bare nats.js client: ${rawReady.map((x) => fmt(x, 0)).join(", ")} ms`,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}
