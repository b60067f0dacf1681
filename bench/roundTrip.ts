/**
 * 1. Round trip: a `ping` from node a (in this process) to node b (its own
 * process) and the `pong` back — ACK both ways, stored on both sides — one at
 * a time, against a raw nats.js request/reply to a responder process on the
 * same broker. The two alternate, one each, so that both see the same noise.
 */
import { Bench, fmt, msSince, now, percentile, type Row } from "./lib/common.js";
import { RawResponder, rawClient, rawRoundTrip } from "./lib/raw.js";

export interface RoundTripOptions {
  /** Measured round trips of each kind. */
  count?: number;
  warmup?: number;
}

export async function roundTrip(opts: RoundTripOptions = {}): Promise<Row[]> {
  const count = opts.count ?? 1000;
  const warmup = opts.warmup ?? 200;
  const bench = await Bench.start("roundtrip");
  try {
    const a = await bench.inProcessNode("a", "a");
    await bench.processNode("b", "a");
    const responder = await RawResponder.start(bench.broker.url, "raw.echo");
    bench.onClose(() => responder.stop());
    const nc = await rawClient(bench.broker.url);
    bench.onClose(() => nc.close());

    const ping = async (): Promise<number> => {
      const t0 = now();
      const [id] = await a.accept({ toNode: "b", method: "ping" });
      const s = await a.final(id as string);
      if (s.state !== "done") throw new Error(`ping ${s.id} ended ${s.state}`);
      return msSince(t0);
    };
    // The baseline carries as many bytes as a ping does.
    const [firstId] = await a.accept({ toNode: "b", method: "ping" });
    await a.final(firstId as string);
    const size = JSON.stringify(a.node.store.outgoing.get(firstId as string)?.envelope ?? {}).length;
    const raw = rawRoundTrip(nc, size);

    for (let i = 0; i < warmup; i++) {
      await ping();
      await raw();
    }
    const steward: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < count; i++) {
      steward.push(await ping());
      baseline.push(await raw());
    }
    const s50 = percentile(steward, 50);
    const b50 = percentile(baseline, 50);
    const s99 = percentile(steward, 99);
    const b99 = percentile(baseline, 99);
    return [
      {
        name: "Round trip p50 (ping→pong, ms)",
        steward: fmt(s50, 3),
        baseline: fmt(b50, 3),
        ratio: `${fmt(s50 / b50)}×`,
        target: "≤ 3×",
        met: s50 / b50 <= 3,
        notes: [
          `round trip: ${count} each, alternating, after ${warmup} warm-up; ping envelope ${size} bytes, raw request the same size`,
        ],
      },
      {
        name: "Round trip p99 (ms)",
        steward: fmt(s99, 3),
        baseline: fmt(b99, 3),
        ratio: `${fmt(s99 / b99)}×`,
        target: "—",
      },
    ];
  } finally {
    await bench.close();
  }
}
