/**
 * `steward demo`: the main job on one machine with no set-up. A local
 * nats-server on a free port, a central and two nodes (ship1, ship2) as
 * separate processes in a temporary folder; a command to both; ship2 taken
 * offline, a message to it waiting on central past its retries (it has a
 * deliverBy), a second one cancelled, ship2 back: the first delivered and
 * done, the cancelled one never run. Everything is cleaned up at the end.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cancelMessages,
  health,
  listNodes,
  messageStatus,
  submit,
  waitForFinal,
  type MessageView,
} from "../client/client.js";
import { sleepUntil } from "../harness/fleet.js";
import { LocalNatsServer } from "../harness/natsServer.js";
import { NodeProcess } from "../harness/nodeProcess.js";
import { takeFlag } from "./args.js";
import { writeBrokerConfig } from "./brokerConfig.js";
import { ago, stateText, table } from "./format.js";

export const DEMO_HELP = `Usage: steward demo [--keep]

Starts a local nats-server on a free port, a central and two nodes (ship1,
ship2) as separate processes in a temporary folder, sends a command to both
and shows the results, takes ship2 offline, sends it a message with a
deliverBy and shows it waiting past its retries, sends it a second one and
cancels that, brings ship2 back and shows the first delivered and done and
the cancelled one never run.
--keep leaves the temporary folder (logs, stores, results) for a look.
Needs nats-server (./setup.sh installs it).
`;

const step = (text: string) => process.stdout.write(`\n▶ ${text}\n`);
const say = (text: string) => process.stdout.write(`  ${text}\n`);

export async function demoCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  let keep = takeFlag(argv, "keep");
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), "steward-demo-"));
  let broker: LocalNatsServer | undefined;
  const nodes: NodeProcess[] = [];
  const cleanup = async () => {
    await Promise.allSettled(nodes.map((n) => n.close()));
    await broker?.stop().catch(() => undefined);
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    void cleanup().then(() => process.exit(130));
  });

  try {
    step("Starting a local broker (nats-server on a free port), one credential per node");
    const names = ["central", "ship1", "ship2"];
    const { confPath, seedFile } = writeBrokerConfig(join(dir, "broker-config"), names, "central", "127.0.0.1:4222");
    broker = await LocalNatsServer.start({ dir: join(dir, "broker"), args: ["-c", confPath] });
    say(`broker at ${broker.url}, configured by "steward broker-config": each node reads only what is addressed`);
    say("to it and publishes only under its own name");

    step("Starting central, ship1 and ship2, each its own process, folder and SQLite store");
    const make = (name: string) =>
      new NodeProcess({
        nodeName: name,
        dir: join(dir, name),
        brokerAddress: (broker as LocalNatsServer).url,
        // Central admits every new node's key at its first hello: fine for a demo on one machine, never for a
        // fleet (there, "steward keys approve NODE" on central).
        settings: {
          startPubREQHello: 2,
          nkeySeedFile: seedFile(name),
          ...(name === "central" && { autoApproveKeys: 1 }),
        },
      });
    const [central, ship1, ship2] = [make("central"), make("ship1"), make("ship2")] as [
      NodeProcess,
      NodeProcess,
      NodeProcess,
    ];
    nodes.push(central, ship1, ship2);
    await Promise.all(nodes.map((n) => n.start()));
    for (const n of nodes) say(`${n.opts.nodeName.padEnd(8)} pid ${n.pid}, socket ${n.socketPath}`);
    say("each node made its own ed25519 key pair and signs everything it sends;");
    say("central admits new keys at their first hello here (autoApproveKeys=1: for demos and labs only —");
    say('in a fleet, approve each node on central with "steward keys approve NODE")');
    await sleepUntil(
      async () => (await health(ship1.socketPath)).bundle > 0 && (await health(ship2.socketPath)).bundle > 0,
      {
        timeoutMs: 20_000,
        what: "ship1 and ship2 to get central's bundle of admitted keys",
      },
    );
    say(
      `ship1 and ship2 pinned central's key and hold its bundle (version ${(await health(ship2.socketPath)).bundle})`,
    );

    step("central → ship1, ship2: cliCommand [bash -c 'echo ...; uname -sr']");
    const command = {
      toNodes: ["ship1", "ship2"],
      method: "REQCliCommand",
      methodArgs: ["bash", "-c", 'echo "$STEWARD_NODE_NAME says hello, running $(uname -sr)"'],
      replyMethod: "REQToFileAppend",
      directory: "demo",
      fileName: "hello.result",
      ACKTimeout: 5,
      retries: 3,
      methodTimeout: 10,
    };
    const ids = await acceptAll(central.socketPath, JSON.stringify(command));
    const first = await waitForFinal(central.socketPath, ids, { timeoutMs: 20_000 });
    for (const m of first.values()) showResult(m);
    say(`results written on central: ${join(central.dataFolder, "demo", "<node>", "hello.result")}`);
    say(
      `  ship1's file says: ${readFileSync(join(central.dataFolder, "demo", "ship1", "hello.result"), "utf8").trim()}`,
    );

    step("central → ship1: cliCommandCont, output streamed back while the command runs");
    const [streamId] = await acceptAll(
      central.socketPath,
      JSON.stringify({
        toNode: "ship1",
        method: "REQnCliCommandCont",
        methodArgs: ["bash", "-c", 'for i in 1 2 3; do echo "tick $i from $STEWARD_NODE_NAME"; sleep 0.8; done'],
        replyMethod: "REQToFileAppend",
        directory: "demo",
        fileName: "stream.log",
        methodTimeout: 10,
      }),
    );
    if (!streamId) throw new Error("central did not accept the message");
    const streamed = await waitForFinal(central.socketPath, [streamId], {
      timeoutMs: 20_000,
      onChange: (m) => say(`state on central: ${stateText(m)}`),
    });
    showResult(streamed.get(streamId) as MessageView);
    say(
      `streamed file on central: ${readFileSync(join(central.dataFolder, "demo", "ship1", "stream.log"), "utf8")
        .trim()
        .replace(/\n/g, " | ")}`,
    );

    step("Stopping ship2: it goes offline");
    await ship2.stop();
    say("ship2 stopped");

    step("central → ship2 while it is offline: cliCommand [date -u], ACKTimeout 1, retries 1, deliverBy 10m");
    const [offlineId] = await acceptAll(
      central.socketPath,
      JSON.stringify({
        toNode: "ship2",
        method: "cliCommand",
        methodArgs: ["date", "-u"],
        ACKTimeout: 1,
        retries: 1,
        deliverBy: "10m",
        replyMethod: "none",
      }),
    );
    if (!offlineId) throw new Error("central did not accept the message");
    // Two attempts spend its retries; a third shows it waits for ship2 instead of failing.
    await sleepUntil(async () => (await messageStatus(central.socketPath, offlineId)).attempt >= 3, {
      timeoutMs: 20_000,
      what: "central to try a third time",
    });
    const waiting = await messageStatus(central.socketPath, offlineId);
    say(`state on central: ${stateText(waiting)} — its retries are spent, but it has a deliverBy: it is not`);
    say("failed, it waits on central for ship2 (re-sent on a slow back-off, and at once when ship2 is back)");

    step("central → ship2, still offline: cliCommand [touch cancelled.txt], then steward cancel");
    const marker = join(ship2.dataFolder, "cancelled.txt");
    const [cancelId] = await acceptAll(
      central.socketPath,
      JSON.stringify({ toNode: "ship2", method: "cliCommand", methodArgs: ["touch", marker], ACKTimeout: 1 }),
    );
    if (!cancelId) throw new Error("central did not accept the message");
    const [cancelled] = await cancelMessages(central.socketPath, { ids: [cancelId], by: "demo" });
    say(`steward cancel ${cancelId}: ${cancelled?.outcome ?? "no answer"}`);
    say(`state on central: ${stateText(await messageStatus(central.socketPath, cancelId))}`);
    say("a signed cancel follows it (it may have reached ship2 with its ACK lost); it waits for ship2 too");

    step("Starting ship2 again");
    const back = Date.now();
    await ship2.start();
    say("ship2 is back on the broker; it announces itself and central re-sends at once");
    const done = await waitForFinal(central.socketPath, [offlineId], {
      timeoutMs: 30_000,
      onChange: (m) => say(`state on central: ${stateText(m)}`),
    });
    const result = done.get(offlineId) as MessageView;
    showResult(result);
    say(`delivered and done ${((Date.parse(result.updatedAt) - back) / 1000).toFixed(1)} s after ship2 started`);
    const afterCancel = await messageStatus(central.socketPath, cancelId);
    const notRun = !existsSync(marker);
    say(`the cancelled one: ${stateText(afterCancel)}; ${notRun ? "never run on ship2" : "RUN on ship2 (a bug)"}`);

    step("steward nodes (on central): last hello and pending messages per node");
    const view = await listNodes(central.socketPath);
    say(
      table(
        ["NODE", "LAST SEEN", "PENDING", "FAILED", "SENT"],
        view.nodes.map((n) => [n.name, ago(n.lastSeen), String(n.pending), String(n.failed), String(n.total)]),
      ).replace(/\n/g, "\n  "),
    );

    const ok =
      [...first.values(), ...streamed.values(), result].every((m) => m.state === "done" && m.exitCode === 0) &&
      afterCancel.state === "cancelled" &&
      notRun;
    step(`${ok ? "Demo complete" : "Demo finished with failures"} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (keep) say(`files kept in ${dir}`);
    return ok ? 0 : 1;
  } catch (err) {
    keep = true;
    process.stderr.write(`\ndemo failed: ${(err as Error).message}\nlogs: ${dir}/<node>/node.log (kept)\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

async function acceptAll(socketPath: string, document: string): Promise<string[]> {
  const answers = await submit(socketPath, document);
  const ids: string[] = [];
  for (const a of answers) {
    if (!a.ok) throw new Error(`refused: ${a.error}`);
    say(`accepted ${a.id} → ${a.toNode}`);
    ids.push(a.id);
  }
  return ids;
}

function showResult(m: MessageView): void {
  say(`${m.toNode}: ${stateText(m)}${m.result?.data ? ` — ${m.result.data.trim()}` : ""}`);
}
