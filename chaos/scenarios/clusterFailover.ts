/**
 * 5. A three-server NATS cluster (routes on loopback); the nodes are given all
 * three servers. The server a node is connected to is SIGKILLed: the node moves
 * to another and traffic goes on there, with nothing lost or run twice.
 */
import { join } from "node:path";
import { Fleet } from "../../src/harness/fleet.js";
import type { LocalNatsServer } from "../../src/harness/natsServer.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { clientsOf, clusterConfigs, startServer } from "../lib/servers.js";
import { answering, emptyFigures, noteRecovery, recovery, settle, since, sleep, Stream } from "../lib/tally.js";

export const clusterFailover: Scenario = {
  name: "clusterFailover",
  title: "3-server cluster, the nodes' server SIGKILLed",
  short: { messages: 300, faults: 2, outageS: 2 },
  full: { messages: 3000, faults: 6, outageS: 5 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const confDir = mkdtempSync(join(tmpdir(), "steward-chaos-cluster-"));
    const members = await clusterConfigs(confDir, 3);
    const [m1, ...others] = members as [(typeof members)[number], ...typeof members];
    const fleet = await Fleet.start("chaos-cluster", [], {}, { brokerArgs: m1.args });
    const servers: LocalNatsServer[] = [fleet.broker];
    try {
      for (const m of others) servers.push(await startServer(join(fleet.dir, m.name), m.args));
      const brokerAddress = servers.map((s) => s.url).join(",");
      await fleet.add("central", { brokerAddress });
      await fleet.add("ship1", { brokerAddress });
      const runs = new RunsLog(fleet, "cluster");
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "cl",
        total: size.messages,
      }).start();
      const watches: Promise<void>[] = [];
      for (let k = 1; k <= size.faults; k++) {
        const at = Math.floor((size.messages * k) / (size.faults + 1));
        while (stream.executions() < at) await sleep(20);
        // Kill the receiver's server on odd rounds, the sender's on even ones.
        const victim = k % 2 === 1 ? "steward:ship1" : "steward:central";
        let idx = -1;
        for (let i = 0; i < members.length && idx < 0; i++)
          if ((await clientsOf(members[i]?.httpPort ?? 0)).includes(victim)) idx = i;
        const server = servers[idx < 0 ? 0 : idx] as LocalNatsServer;
        await server.kill();
        fig.faults++;
        const killed = Date.now();
        // Traffic goes on while the server is down: the outage is not lifted, the others carry it.
        watches.push(noteRecovery(fig, recovery(fleet, "central", stream.ids, killed)));
        const before = stream.executions();
        await sleep(size.outageS * 1000);
        log(
          `killed ${members[idx]?.name ?? "?"} (had ${victim}): ${stream.executions() - before} runs while it was down`,
        );
        await server.restart();
      }
      fig.notes.push("recover = from the kill (the server stays down)");
      await stream.finished();
      await Promise.all(watches);
      await settle(fig, fleet, "central", stream.ids, runs);
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close();
      for (const s of servers.slice(1)) await s.stop();
      const { rmSync } = await import("node:fs");
      rmSync(confDir, { recursive: true, force: true });
    }
    fig.seconds = since(t0);
    return fig;
  },
};
