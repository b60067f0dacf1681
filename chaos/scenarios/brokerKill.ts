/**
 * 1. The broker SIGKILLed and restarted, again and again, while messages flow
 * between two nodes. Nothing accepted may be lost, nothing run twice: the
 * nodes keep every message in their stores and re-send after reconnecting.
 */
import { Fleet } from "../../src/harness/fleet.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

export const brokerKill: Scenario = {
  name: "brokerKill",
  title: "broker SIGKILLed and restarted repeatedly mid-stream",
  short: { messages: 300, faults: 2, outageS: 1 },
  full: { messages: 10_000, faults: 8, outageS: 2 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-broker", ["central", "ship1"]);
    try {
      const runs = new RunsLog(fleet, "broker-kill");
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "bk",
        total: size.messages,
      }).start();
      const watches: Promise<void>[] = [];
      for (let k = 1; k <= size.faults; k++) {
        // Spread the kills over the stream.
        const at = Math.floor((size.messages * k) / (size.faults + 1));
        while (stream.executions() < at) await sleep(50);
        await fleet.broker.kill();
        fig.faults++;
        await sleep(size.outageS * 1000);
        await fleet.broker.restart();
        watches.push(noteRecovery(fig, recovery(fleet, "central", stream.ids, Date.now())));
        log(`broker kill ${k}: ${stream.accepted.size} accepted, ${stream.executions()} runs so far`);
      }
      await stream.finished();
      await Promise.all(watches);
      await settle(fig, fleet, "central", stream.ids, runs);
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
