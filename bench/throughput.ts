/**
 * 2. Throughput: pings from node a (this process) to node b (its own
 * process), each with its ACK and its reply, `window` in flight at all
 * times, against raw nats.js request/reply pipelined the same way to a
 * responder process. Rounds alternate Steward and raw; the median round counts.
 */
import { Bench, fmt, median, msSince, now, type Row } from "./lib/common.js";
import { RawResponder, rawClient, rawPayload } from "./lib/raw.js";

export interface ThroughputOptions {
  /** Messages per Steward round. */
  messages?: number;
  /** Requests per raw round (raw is far faster: more of them for a steady figure). */
  rawMessages?: number;
  window?: number;
  rounds?: number;
}

/** Run `total` operations with `window` of them in flight; returns operations per second. */
async function pipelined(total: number, window: number, op: () => Promise<void>): Promise<number> {
  let started = 0;
  const t0 = now();
  const lane = async () => {
    while (started < total) {
      started++;
      await op();
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, total) }, lane));
  return total / (msSince(t0) / 1000);
}

export async function throughput(opts: ThroughputOptions = {}): Promise<Row[]> {
  const messages = opts.messages ?? 3000;
  const rawMessages = opts.rawMessages ?? 30_000;
  const window = opts.window ?? 200;
  const rounds = opts.rounds ?? 3;
  const bench = await Bench.start("throughput");
  try {
    const a = await bench.inProcessNode("a", "a");
    await bench.processNode("b", "a");
    const responder = await RawResponder.start(bench.broker.url, "raw.echo");
    bench.onClose(() => responder.stop());
    const nc = await rawClient(bench.broker.url);
    bench.onClose(() => nc.close());
    const payload = rawPayload();

    let failed = 0;
    const ping = async () => {
      const [id] = await a.accept({ toNode: "b", method: "ping" });
      if ((await a.final(id as string)).state !== "done") failed++;
    };
    const raw = async () => {
      await nc.request("raw.echo", payload, { timeout: 10_000 });
    };
    await pipelined(300, window, ping);
    await pipelined(3000, window, raw);

    const steward: number[] = [];
    const baseline: number[] = [];
    // CPU of this process (node a, or the raw requester) per message: where the limit is when it is busy all the time.
    const cpuPer = async (
      count: number,
      run: () => Promise<number>,
    ): Promise<{ rate: number; us: number; busy: number }> => {
      const c0 = process.cpuUsage();
      const t0 = now();
      const rate = await run();
      const c = process.cpuUsage(c0);
      return { rate, us: (c.user + c.system) / count, busy: (c.user + c.system) / 1000 / msSince(t0) };
    };
    const stewardCpu: { us: number; busy: number }[] = [];
    const rawCpu: { us: number; busy: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      const sr = await cpuPer(messages, () => pipelined(messages, window, ping));
      steward.push(sr.rate);
      stewardCpu.push(sr);
      const rr = await cpuPer(rawMessages, () => pipelined(rawMessages, window, raw));
      baseline.push(rr.rate);
      rawCpu.push(rr);
    }
    if (failed > 0) throw new Error(`${failed} pings did not end done`);
    const s = median(steward);
    const b = median(baseline);
    return [
      {
        name: "Throughput (msg/s, ACK + reply, pipelined)",
        steward: fmt(s),
        baseline: fmt(b),
        ratio: `${fmt((100 * s) / b, 1)}%`,
        target: "≥ 40%",
        met: s / b >= 0.4,
        notes: [
          `throughput: ${window} in flight; ${rounds} alternating rounds of ${messages} pings and ${rawMessages} raw requests; ` +
            `Steward rounds ${steward.map((x) => fmt(x)).join(", ")} msg/s; raw rounds ${baseline.map((x) => fmt(x)).join(", ")} msg/s`,
          `throughput: CPU per message in the sending process — node a: ${stewardCpu.map((x) => `${fmt(x.us, 0)} µs (busy ${fmt(100 * x.busy, 0)}%)`).join(", ")}; ` +
            `raw requester: ${rawCpu.map((x) => `${fmt(x.us, 0)} µs (busy ${fmt(100 * x.busy, 0)}%)`).join(", ")}`,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}
