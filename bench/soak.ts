/**
 * Soak: many pings from node a to node b (both their own processes, on a
 * real broker), with retention shortened so that the stores reach their
 * steady size within the run. Printed at the start, every `every` messages
 * and at the end: both store files (with their -wal), the resident memory of
 * both node processes, and the latency of the messages since the last line
 * (from accepted to done, as node a stored them). The store must not keep
 * growing: at the end, within 2× of its size after the first `every`.
 *
 *   npm run bench -- --only soak                          1,000,000 messages
 *   npm run bench -- --only soak --soak-messages 100000   a short run
 *   npm run bench -- --only soak --soak-rate 0            as fast as it goes (the size then follows the rate)
 */
import Database from "better-sqlite3";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { submit, waitQuery } from "../src/client/client.js";
import type { NodeProcess } from "../src/harness/nodeProcess.js";
import { Bench, fmt, msSince, now, percentile, type Row, rssMB, waitUntil } from "./lib/common.js";

export interface SoakOptions {
  messages?: number;
  /** A line of figures every this many messages. */
  every?: number;
  /** Seconds a finished message stays (the nodes' `retention`). */
  retention?: number;
  /**
   * Seconds a message may take to be delivered (the nodes' `maxMessageAge`): received ids are kept that long,
   * so with the default of 7 days they would be most of what a short run leaves behind.
   */
  maxMessageAge?: number;
  /** Seconds between prunings (the nodes' `pruneInterval`). */
  pruneInterval?: number;
  /**
   * Messages per second handed to node a at most (0: as fast as it goes). A steady rate keeps the number of
   * messages within `retention` steady, so that the store's size says whether it leaks, not how fast it went.
   */
  rate?: number;
  /** Messages per document handed to node a, and documents in flight. */
  batch?: number;
  lanes?: number;
}

interface Line {
  at: number;
  seconds: number;
  storeA: number;
  storeB: number;
  rssA: number;
  rssB: number;
  /** Rows held in the outbox, inbox and dedupe tables: what the store size follows. */
  rowsA: number;
  rowsB: number;
  p50: number;
  p99: number;
}

const storeFile = (node: NodeProcess) => join(node.opts.dir, "var", `${node.opts.nodeName}.sqlite`);

/** A store file and its WAL, in MB. */
function storeMB(node: NodeProcess): number {
  const file = storeFile(node);
  const size = (p: string) => (existsSync(p) ? statSync(p).size : 0);
  return (size(file) + size(`${file}-wal`)) / 2 ** 20;
}

/** Rows a node's store holds, read as an operator's sqlite3 would (a count: a scan, fine for a bench). */
function rowsHeld(node: NodeProcess): number {
  const db = new Database(storeFile(node), { readonly: true });
  try {
    const count = (table: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return count("outbox") + count("inbox") + count("dedupe");
  } finally {
    db.close();
  }
}

export async function soak(opts: SoakOptions = {}): Promise<Row[]> {
  const total = opts.messages ?? 1_000_000;
  const every = opts.every ?? Math.min(100_000, Math.max(1, Math.floor(total / 10)));
  const retention = opts.retention ?? 60;
  const pruneInterval = opts.pruneInterval ?? 5;
  const rate = opts.rate ?? 1000;
  const batch = opts.batch ?? 50;
  const lanes = opts.lanes ?? 4;
  const maxMessageAge = opts.maxMessageAge ?? 2 * retention;
  const settings = { retention, pruneInterval, maxMessageAge };
  const bench = await Bench.start("soak");
  try {
    const a = await bench.processNode("a", "a", settings);
    const b = await bench.processNode("b", "a", settings);
    // b is admitted at its first hello; until then a's pings to it are refused. Go once one comes back done.
    await waitUntilAsync(async () => {
      const [answer] = await submit(a.socketPath, JSON.stringify({ toNode: "b", method: "ping" }));
      if (!answer?.ok) return false;
      const [m] = await waitQuery(a.socketPath, [answer.id], 10_000);
      return m?.state === "done";
    }, 60_000);

    const lines: Line[] = [];
    let latencies: number[] = [];
    let started = 0;
    let finished = 0;
    let failed = 0;
    const t0 = now();
    // The first line comes early: the stores and processes as they start, before retention prunes anything.
    let nextLine = Math.min(every, 10_000);
    const line = () => {
      lines.push({
        at: finished,
        seconds: msSince(t0) / 1000,
        storeA: storeMB(a),
        storeB: storeMB(b),
        rssA: rssMB(a.pid as number),
        rssB: rssMB(b.pid as number),
        rowsA: rowsHeld(a),
        rowsB: rowsHeld(b),
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
      });
      const l = lines.at(-1) as Line;
      process.stderr.write(
        `\n  soak ${l.at.toLocaleString("en-US")} msgs, ${fmt(l.seconds, 0)} s: store a ${fmt(l.storeA, 1)} MB, ` +
          `b ${fmt(l.storeB, 1)} MB (rows held ${fmt(l.rowsA)}, ${fmt(l.rowsB)}); RSS a ${fmt(l.rssA, 0)} MB, b ${fmt(l.rssB, 0)} MB; ` +
          `latency p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms`,
      );
      latencies = [];
    };
    const lane = async () => {
      while (started < total) {
        const n = Math.min(batch, total - started);
        const due = rate > 0 ? (started / rate) * 1000 - msSince(t0) : 0;
        started += n;
        if (due > 0) await new Promise((r) => setTimeout(r, due));
        const doc = Array.from({ length: n }, () => ({ toNode: "b", method: "ping" }));
        const answers = await submit(a.socketPath, JSON.stringify(doc));
        const ids = answers.flatMap((x) => (x.ok ? [x.id] : []));
        failed += answers.length - ids.length;
        for (const m of await waitQuery(a.socketPath, ids, 60_000)) {
          if (m.state === "done") latencies.push(Date.parse(m.updatedAt) - Date.parse(m.createdAt));
          else failed++;
        }
        finished += n;
        if (finished >= nextLine) {
          line();
          nextLine = nextLine < every ? every : nextLine + every;
        }
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    if (lines.at(-1)?.at !== finished) line();
    process.stderr.write("\n");

    const last = lines.at(-1) as Line;
    const first = lines.find((l) => l.at >= every) ?? last;
    const within = last.storeA <= 2 * first.storeA && last.storeB <= 2 * first.storeB;
    const start = lines[0] as Line;
    return [
      {
        name: `Soak: store a + b after ${total.toLocaleString("en-US")} msgs (MB)`,
        steward: `${fmt(last.storeA, 1)} + ${fmt(last.storeB, 1)}`,
        baseline: `${fmt(first.storeA, 1)} + ${fmt(first.storeB, 1)} after ${first.at.toLocaleString("en-US")}`,
        ratio: `${fmt(last.storeA / first.storeA)}× / ${fmt(last.storeB / first.storeB)}×`,
        target: "≤ 2×",
        met: within && failed === 0,
        notes: [
          `soak: ${total.toLocaleString("en-US")} pings a → b (node processes), ${lanes} × ${batch} in flight, ` +
            `retention ${retention} s, maxMessageAge ${maxMessageAge} s, pruneInterval ${pruneInterval} s, ${rate > 0 ? `paced at ${rate} msg/s` : "unpaced"}, ` +
            `${fmt(total / last.seconds, 0)} msg/s, ` +
            `${failed} not done; store at the end ${within ? "within" : "NOT within"} 2× of its size after ${first.at.toLocaleString("en-US")}`,
          `soak: latency p50/p99 ${fmt(start.p50, 1)}/${fmt(start.p99, 1)} ms at the start, ${fmt(last.p50, 1)}/${fmt(last.p99, 1)} ms at the end; ` +
            `RSS a/b ${fmt(start.rssA, 0)}/${fmt(start.rssB, 0)} MB at the start, ${fmt(last.rssA, 0)}/${fmt(last.rssB, 0)} MB at the end`,
          ...lines.map(
            (l) =>
              `soak: ${l.at.toLocaleString("en-US")} msgs, ${fmt(l.seconds, 0)} s — store a ${fmt(l.storeA, 1)} MB, b ${fmt(l.storeB, 1)} MB ` +
              `(rows held ${fmt(l.rowsA)}, ${fmt(l.rowsB)}); ` +
              `RSS a ${fmt(l.rssA, 0)} MB, b ${fmt(l.rssB, 0)} MB; latency p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms`,
          ),
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}

/** waitUntil for a condition that must ask a node (each try may fail while it starts). */
async function waitUntilAsync(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  let ok = false;
  const deadline = Date.now() + timeoutMs;
  while (!ok && Date.now() < deadline) {
    ok = await cond().catch(() => false);
    if (!ok) await new Promise((r) => setTimeout(r, 200));
  }
  await waitUntil(() => ok, 0, "node b to be admitted and answer a ping");
}
