/**
 * 6. A leaf-node topology, as an operator of ships on satellite links runs it:
 * central on the hub, ship1 on a leaf server whose link to the hub goes
 * through the suite's proxy. The link is cut (reset, and stalled) and
 * restored while messages flow; ship1 never loses its own broker, so it is
 * its hellos that tell central it is reachable again.
 */
import { join } from "node:path";
import { Fleet } from "../../src/harness/fleet.js";
import type { LocalNatsServer } from "../../src/harness/natsServer.js";
import { freePort, TcpProxy } from "../../src/harness/net.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { hubConfig, leafConfig, startServer } from "../lib/servers.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

const CHUNK = 25;
const WINDOW = 50;

export const leafCut: Scenario = {
  name: "leafCut",
  title: "leaf server's link to the hub cut and restored",
  short: { messages: 300, faults: 2, outageS: 3 },
  full: { messages: 3000, faults: 6, outageS: 15 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const confDir = mkdtempSync(join(tmpdir(), "steward-chaos-leaf-"));
    const leafPort = await freePort();
    const proxy = await TcpProxy.start({ port: leafPort });
    const fleet = await Fleet.start("chaos-leaf", [], {}, { brokerArgs: hubConfig(confDir, leafPort, proxy.port) });
    let leaf: LocalNatsServer | undefined;
    try {
      leaf = await startServer(join(fleet.dir, "leaf"), leafConfig(confDir, `nats-leaf://127.0.0.1:${proxy.port}`));
      await fleet.add("central");
      await fleet.add("ship1", { brokerAddress: leaf.url });
      const runs = new RunsLog(fleet, "leaf");
      // Retries enough for the outages: attempts burn while ship1 is unreachable (guarantee 3).
      const extra = { ACKTimeout: 2, retries: 2000, replyACKTimeout: 2, replyRetries: 2000 };
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "lf",
        total: size.messages,
        extra,
        chunk: CHUNK,
        window: WINDOW,
      }).start();
      const watches: Promise<void>[] = [];
      for (let k = 1; k <= size.faults; k++) {
        const at = Math.floor((size.messages * k) / (size.faults + 1));
        while (stream.executions() < at) await sleep(20);
        const mode = k % 2 === 1 ? "reset" : "stall";
        proxy.cut(mode);
        fig.faults++;
        const atCut = stream.executions();
        await sleep(size.outageS * 1000);
        const duringCut = stream.executions() - atCut;
        proxy.restore();
        watches.push(noteRecovery(fig, recovery(fleet, "central", stream.ids, Date.now())));
        // Only messages ship1 had already received may run while it is cut off: at most a window and a chunk.
        log(
          `leaf link cut (${mode}) ${size.outageS}s: ${duringCut} runs during the cut, ${stream.executions()} runs so far`,
        );
        if (duringCut > WINDOW + CHUNK)
          fig.problems.push(`${duringCut} runs while the leaf link was cut: the cut did not hold`);
      }
      await stream.finished();
      await Promise.all(watches);
      await settle(fig, fleet, "central", stream.ids, runs);
      fig.notes.push(`cuts alternate reset/stall, ${size.outageS}s each`);
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close();
      await leaf?.stop();
      await proxy.close();
      rmSync(confDir, { recursive: true, force: true });
    }
    fig.seconds = since(t0);
    return fig;
  },
};
