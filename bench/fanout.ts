/**
 * 4. Fan-out: one message (`toNodes`, method ping) from node a (this process)
 * to N simulated nodes, until every reply is back on a. The simulated nodes
 * share a few processes, but each has its own store, socket and broker
 * connection. N = 100 uses the first 100 of the same fleet.
 */
import { Bench, fmt, median, msSince, now, type Row, rssMB, waitUntil } from "./lib/common.js";
import { SimFleet } from "./lib/simNodes.js";

export interface FanoutOptions {
  sizes?: number[];
  processes?: number;
  rounds?: number;
}

export async function fanout(opts: FanoutOptions = {}): Promise<Row[]> {
  const sizes = opts.sizes ?? [100, 1000];
  const processes = opts.processes ?? 4;
  const rounds = opts.rounds ?? 3;
  const largest = Math.max(...sizes);
  const bench = await Bench.start("fanout");
  try {
    const a = await bench.inProcessNode("a", "a");
    const names = Array.from({ length: largest }, (_, i) => `n${String(i).padStart(4, "0")}`);
    const fleet = await SimFleet.start(bench.dir, bench.broker.url, "a", names, processes);
    bench.onClose(() => fleet.close());
    const rss = fleet.pids.reduce((sum, pid) => sum + rssMB(pid), 0);

    const once = async (n: number): Promise<number> => {
      const t0 = now();
      const ids = await a.accept({ toNodes: names.slice(0, n), method: "ping" });
      const states = await Promise.all(ids.map((id) => a.final(id, 120_000)));
      const bad = states.filter((s) => s.state !== "done");
      if (bad.length > 0)
        throw new Error(`fan-out to ${n}: ${bad.length} messages did not end done (first: ${JSON.stringify(bad[0])})`);
      return msSince(t0);
    };
    // Every node admitted by central and holding its bundle (central trusts each key at once; the nodes get the
    // batched bundle a moment later): one round to all of them before any is measured.
    await waitUntil(() => names.every((n) => a.node.trust.admitted(n)), 120_000, "central to admit every node");
    await once(largest);
    const rows: Row[] = [];
    for (const n of sizes) {
      const times: number[] = [];
      for (let r = 0; r < rounds; r++) times.push(await once(n));
      const t = median(times);
      rows.push({
        name: `Fan-out ping to ${n.toLocaleString("en-US")} nodes, all replies back (ms)`,
        steward: fmt(t, 0),
        baseline: "—",
        ratio: "—",
        target: n === 1000 ? "≤ 1,000 ms" : "—",
        ...(n === 1000 && { met: t <= 1000 }),
        notes: [`fan-out ${n}: rounds ${times.map((x) => fmt(x, 0)).join(", ")} ms`],
      });
    }
    rows[0]?.notes?.unshift(
      `fan-out: ${largest} simulated nodes in ${processes} processes, all on the broker after ${fmt(fleet.readyMs / 1000, 1)} s; ` +
        `${fmt(rss, 0)} MB resident in all (${fmt(rss / largest, 1)} MB per simulated node)`,
    );
    return rows;
  } finally {
    await bench.close();
  }
}
