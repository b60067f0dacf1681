/**
 * 2. The receiving node SIGKILLed again and again mid-stream. Messages it had
 * stored but not run are run after its restart; a run its crash cut short is
 * run again and marked as a re-run (guarantee 5) — the only second run allowed.
 */
import { Fleet } from "../../src/harness/fleet.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

export const receiverKill: Scenario = {
  name: "receiverKill",
  title: "receiving node SIGKILLed repeatedly mid-stream",
  short: { messages: 300, faults: 2, outageS: 1 },
  full: { messages: 2000, faults: 8, outageS: 2 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-receiver", ["central", "ship1"]);
    try {
      const runs = new RunsLog(fleet, "receiver-kill");
      const ship1 = fleet.node("ship1");
      // Each run takes a moment, so that some are running when ship1 dies.
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "rk",
        total: size.messages,
        then: "sleep 0.05",
        chunk: 10,
        window: 20,
      });
      stream.start();
      const watches: Promise<void>[] = [];
      for (let k = 1; k <= size.faults; k++) {
        const at = Math.floor((size.messages * k) / (size.faults + 1));
        while (stream.executions() < at) await sleep(20);
        await ship1.kill();
        fig.faults++;
        await sleep(size.outageS * 1000);
        await ship1.start();
        watches.push(noteRecovery(fig, recovery(fleet, "central", stream.ids, Date.now())));
        log(`receiver kill ${k}: ${stream.accepted.size} accepted, ${stream.executions()} runs so far`);
      }
      await stream.finished();
      await Promise.all(watches);
      await settle(fig, fleet, "central", stream.ids, runs, { receiverCrashed: true });
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
