/**
 * 3. The sending node SIGKILLed mid-stream with messages in its store:
 * queued, sent without an ACK, waiting for their reply. After its restart it
 * re-sends what was not ACKed and takes the replies the receiver kept
 * re-sending; a submission the crash cut short is sent again with the same
 * ids and is not doubled (a client-chosen id makes input idempotent).
 */
import { Fleet } from "../../src/harness/fleet.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

export const senderKill: Scenario = {
  name: "senderKill",
  title: "sending node SIGKILLed mid-stream with messages in its store",
  short: { messages: 300, faults: 2, outageS: 1 },
  full: { messages: 3000, faults: 8, outageS: 2 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-sender", ["central", "ship1"]);
    try {
      const runs = new RunsLog(fleet, "sender-kill");
      const central = fleet.node("central");
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "sk",
        total: size.messages,
        window: 300,
      }).start();
      const watches: Promise<void>[] = [];
      for (let k = 1; k <= size.faults; k++) {
        const at = Math.floor((size.messages * k) / (size.faults + 1));
        while (stream.executions() < at) await sleep(20);
        await central.kill();
        fig.faults++;
        await sleep(size.outageS * 1000);
        await central.start();
        watches.push(noteRecovery(fig, recovery(fleet, "central", stream.ids, Date.now())));
        log(`sender kill ${k}: ${stream.accepted.size} accepted, ${stream.executions()} runs so far`);
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
