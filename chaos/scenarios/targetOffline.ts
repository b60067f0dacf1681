/**
 * 4. A target offline for a long time, then back: every message queued for it
 * is delivered, and soon (guarantee 3: a node that comes back gets its pending
 * messages at once, not after the next back-off). Two ways to be offline:
 * ship1 stopped, and ship2's link to the broker stalled by a TCP proxy (a
 * satellite link gone dark: no reset, the node finds out by its own pings).
 */
import { Fleet } from "../../src/harness/fleet.js";
import { TcpProxy } from "../../src/harness/net.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

export const targetOffline: Scenario = {
  name: "targetOffline",
  title: "target stopped / its link stalled by a proxy for a long time, then back",
  short: { messages: 100, faults: 2, outageS: 4 },
  full: { messages: 1000, faults: 2, outageS: 60 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-offline", ["central", "ship1"]);
    const proxy = await TcpProxy.start({ port: fleet.broker.port });
    try {
      await fleet.add("ship2", { brokerAddress: proxy.url });
      // Retries enough for the outage: attempts burn while the target is away (guarantee 3).
      const extra = { ACKTimeout: 2, retries: Math.ceil(size.outageS / 2) * 4 + 50 };

      // a) ship1 stopped while its messages are sent.
      const runs1 = new RunsLog(fleet, "offline-stopped");
      await fleet.node("ship1").stop();
      const s1 = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs: runs1,
        prefix: "off1",
        total: size.messages,
        extra,
        window: 1e9,
      });
      await s1.start().finished();
      fig.faults++;
      await sleep(size.outageS * 1000);
      const back1 = Date.now();
      await fleet.node("ship1").start();
      await noteRecovery(fig, recovery(fleet, "central", s1.ids, back1));
      log(`ship1 stopped ${size.outageS}s: ${s1.ids.length} messages, back and drained in ${fig.drainS}s`);

      // b) ship2's link stalled (bytes stop, sockets stay open) while its messages are sent.
      const runs2 = new RunsLog(fleet, "offline-stalled");
      proxy.cut("stall");
      const s2 = new Stream({
        fleet,
        from: "central",
        toNode: "ship2",
        runs: runs2,
        prefix: "off2",
        total: size.messages,
        extra,
        window: 1e9,
      });
      await s2.start().finished();
      fig.faults++;
      await sleep(size.outageS * 1000);
      const back2 = Date.now();
      proxy.restore();
      const r2 = recovery(fleet, "central", s2.ids, back2);
      await noteRecovery(fig, r2);
      const { drainS } = await r2;
      log(`ship2 link stalled ${size.outageS}s: ${s2.ids.length} messages, restored and drained in ${drainS}s`);
      fig.notes.push(`outage ${size.outageS}s each`);

      await settle(fig, fleet, "central", s1.ids, runs1);
      await settle(fig, fleet, "central", s2.ids, runs2);
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close();
      await proxy.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
