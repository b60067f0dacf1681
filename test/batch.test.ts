/**
 * Batch rollout (docs/DELIVERY.md, "Batch rollout"), against a real broker and real nodes: central
 * sends one message to four targets in waves. A later wave stays `pending` until every message of
 * the wave before it has ended (the commands of wave 1 wait for a gate file the test creates); past
 * maxErrors no further wave goes, and `steward send --wait` says so with its own exit status; a
 * restart of the origin mid-rollout carries on; a percentage is of the targets. And the fields'
 * checks, each naming the field.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type MessageView, waitQuery } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { RunsLog, statesOf } from "../src/harness/runs.js";
import { parseMessages } from "../src/message/parse.js";
import { type CliResult, runCli } from "./helpers/cli-helpers.js";

const TARGETS = ["n1", "n2", "n3", "n4"];
let fleet: Fleet;

before(async () => {
  fleet = await Fleet.start("batch", ["central", ...TARGETS]);
});
after(() => fleet.close());

const show = (r: CliResult) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** A run log, and a gate: each command logs its message id, then waits until the gate file exists. */
function gated(name: string): { runs: RunsLog; gate: string; args: string[]; open(): void } {
  const runs = new RunsLog(fleet, name);
  const gate = join(runs.dir, "gate");
  return {
    runs,
    gate,
    args: runs.args(`while [ ! -e '${gate}' ]; do sleep 0.05; done`),
    open: () => writeFileSync(gate, ""),
  };
}

/** One input object to every target, with a rollout; the ids in target order. */
function rollout(methodArgs: string[], fields: Record<string, unknown>): Promise<string[]> {
  return fleet.sendOk("central", {
    toNodes: TARGETS,
    method: "cliCommand",
    methodArgs,
    replyMethod: "none",
    ACKTimeout: 2,
    retries: 100,
    ...fields,
  });
}

async function views(ids: string[]): Promise<MessageView[]> {
  const m = await statesOf(fleet, "central", ids);
  return ids.map((id) => m.get(id) as MessageView);
}

/** Wait until each of `ids` is in one of `states`. */
async function waitAll(ids: string[], states: MessageView["state"][], timeoutMs = 30_000): Promise<MessageView[]> {
  let last: MessageView[] = [];
  await sleepUntil(
    async () => {
      last = await views(ids);
      return last.every((m) => states.includes(m.state));
    },
    { timeoutMs, what: () => `${states.join("/")}: ${JSON.stringify(last.map((m) => [m.toNode, m.state]))}` },
  );
  return last;
}

describe("batch rollout", () => {
  test("batch 2 of 4: the second wave stays pending until every message of the first has ended", async () => {
    const g = gated("waves");
    const ids = await rollout(g.args, { batch: 2 });
    const [first, second] = [ids.slice(0, 2), ids.slice(2)];
    // Wave 1 runs on its targets and waits for the gate: it has started, and not ended.
    const running = await waitAll(first, ["running"]);
    for (const m of running) assert.deepEqual(m.batch && [m.batch.wave, m.batch.waves], [1, 2]);
    for (const m of await views(second)) {
      assert.equal(m.state, "pending", `${m.toNode} is in wave 2: ${JSON.stringify(m)}`);
      assert.equal(m.batch?.wave, 2);
    }
    assert.deepEqual([...g.runs.counts().keys()].sort(), [...first].sort(), "only wave 1 has run so far");
    g.open();
    const all = await waitAll(ids, ["done"]);
    for (const m of all) assert.equal(m.exitCode, 0, JSON.stringify(m));
    assert.equal(all[0]?.batch?.state, "done");
    // The log in the order the commands started: both of wave 1 before any of wave 2.
    const order = [...g.runs.counts().keys()];
    assert.deepEqual(order.slice(0, 2).sort(), [...first].sort(), `order of runs: ${order.join(", ")}`);
    assert.deepEqual(order.slice(2).sort(), [...second].sort(), `order of runs: ${order.join(", ")}`);
  });

  test("max-errors 0 and a failure in wave 1: no further wave, and steward send --wait exits 3 and says why", async () => {
    const runs = new RunsLog(fleet, "threshold");
    // n1 fails (exit 7), n2 succeeds; n3 and n4 are never sent.
    const r = await runCli(
      [
        "send",
        ...TARGETS.flatMap((t) => ["--to", t]),
        "--batch",
        "2",
        "--max-errors",
        "0",
        "--wait",
        "--timeout",
        "60",
        "--socket-folder",
        join(fleet.node("central").opts.dir, "tmp"),
        "--",
        ...runs.args('[ "$STEWARD_NODE_NAME" != n1 ] || exit 7'),
      ],
      { cwd: fleet.dir, timeoutMs: 90_000 },
    );
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /^wave 1\/2: n1, n2$/m, show(r));
    assert.match(r.stderr, /^wave 1\/2 ended: 1 done, 1 failed$/m, show(r));
    assert.doesNotMatch(r.stderr, /^wave 2\/2/m, show(r));
    assert.match(
      r.stdout,
      /^rollout stopped after wave 1\/2 \(more than max-errors 0 failed\): 1 done, 1 failed, 2 pending; not sent: n3, n4$/m,
      show(r),
    );
    assert.match(r.stdout, /^== n3 \(\S+\): pending \(wave 2\/2, rollout stopped\)\n {3}not sent/m, show(r));
    const ids = [...r.stdout.matchAll(/^accepted (\S+) (\S+)/gm)].map((m) => m[1] as string);
    assert.equal(ids.length, 4, show(r));
    const after = await views(ids);
    assert.deepEqual(
      after.map((m) => [m.toNode, m.state, m.exitCode]),
      [
        ["n1", "done", 7],
        ["n2", "done", 0],
        ["n3", "pending", null],
        ["n4", "pending", null],
      ],
    );
    assert.equal(after[2]?.batch?.state, "stopped");
    // The node decided (stopped is stored) before the CLI could say so; only wave 1 ever ran.
    assert.deepEqual([...runs.counts().keys()].sort(), ids.slice(0, 2).sort());

    // The held wave is the operator's to drop: steward cancel --state pending withdraws it, and nothing follows it.
    const cancel = await runCli(
      ["cancel", "--state", "pending", "--socket-folder", join(fleet.node("central").opts.dir, "tmp")],
      { cwd: fleet.dir, timeoutMs: 30_000 },
    );
    assert.equal(cancel.code, 0, show(cancel));
    for (const id of ids.slice(2)) assert.match(cancel.stdout, new RegExp(`^${id} cancelled$`, "m"), show(cancel));
    assert.deepEqual(
      (await views(ids)).map((m) => m.state),
      ["done", "done", "cancelled", "cancelled"],
    );
  });

  test("the origin is killed mid-rollout: after its restart the rollout carries on to the end", async () => {
    const g = gated("restart");
    const ids = await rollout(g.args, { batch: 2, maxErrors: 1 });
    await waitAll(ids.slice(0, 2), ["running"]);
    const central = fleet.node("central");
    await central.kill();
    // Wave 1 ends while its origin is down: the replies wait for it on n1 and n2.
    g.open();
    await sleepUntil(() => g.runs.total() === 2, { what: "wave 1 to have run" });
    await central.start();
    const all = await waitAll(ids, ["done"], 60_000);
    assert.deepEqual(
      all.map((m) => [m.toNode, m.exitCode, m.batch?.wave]),
      [
        ["n1", 0, 1],
        ["n2", 0, 1],
        ["n3", 0, 2],
        ["n4", 0, 2],
      ],
    );
    assert.equal(all[3]?.batch?.state, "done");
    assert.equal(g.runs.total(), 4, "each ran once");
  });

  test("a target offline keeps its wave open: not an error, and the next wave waits for it", async () => {
    const runs = new RunsLog(fleet, "offline");
    const n1 = fleet.node("n1");
    await n1.stop();
    const ids = await rollout(runs.args(), { batch: 2, maxErrors: 0, ACKTimeout: 1, retries: 60 });
    // n2 is done and n1's message has been sent again while n1 is away: wave 1 is still open.
    await fleet.waitState("central", ids[1] as string, "done");
    await sleepUntil(async () => ((await fleet.status("central", ids[0] as string)).attempt ?? 0) >= 2, {
      what: "the message to n1 to be sent again",
    });
    const held = await views(ids);
    assert.deepEqual(
      held.map((m) => m.state),
      ["sent", "done", "pending", "pending"],
    );
    assert.equal(held[2]?.batch?.state, "running");
    await n1.start();
    const all = await waitAll(ids, ["done"], 60_000);
    assert.equal(all[3]?.batch?.state, "done");
    assert.equal(runs.total(), 4);
  });

  test('batch "50%" of 4 targets: two waves of 2', async () => {
    const g = gated("percent");
    const ids = await rollout(g.args, { batch: "50%" });
    const at = await views(ids);
    assert.deepEqual(
      at.map((m) => [m.batch?.wave, m.batch?.waves]),
      [
        [1, 2],
        [1, 2],
        [2, 2],
        [2, 2],
      ],
    );
    assert.deepEqual(
      at.slice(2).map((m) => m.state),
      ["pending", "pending"],
    );
    g.open();
    // The node's wait query answers once all four are final.
    const final = await waitQuery(fleet.node("central").socketPath, ids, 30_000);
    assert.deepEqual(
      final.map((m) => m.state),
      ["done", "done", "done", "done"],
    );
  });
});

describe("batch and maxErrors fields", () => {
  const defaults = { ACKTimeout: 5, retries: 1, methodTimeout: 10 };
  const parse = (fields: Record<string, unknown>) =>
    parseMessages(
      JSON.stringify({ toNodes: ["a", "b"], methodArgs: ["true"], method: "cliCommand", ...fields }),
      defaults,
    )[0];
  const refusal = (fields: Record<string, unknown>): string => {
    const outcome = parse(fields);
    assert.ok(outcome && "error" in outcome, `expected a refusal for ${JSON.stringify(fields)}`);
    return outcome.error.message;
  };

  test("are checked, and a refusal names the field", () => {
    for (const batch of [0, -1, 1.5, "0%", "101%", "ten", "10 %", true])
      assert.match(refusal({ batch }), /field "batch": expected a number of targets per wave/, String(batch));
    for (const maxErrors of [-1, 0.5, "2"])
      assert.match(refusal({ batch: 1, maxErrors }), /field "maxErrors": expected a whole number/, String(maxErrors));
    assert.match(refusal({ maxErrors: 2 }), /field "maxErrors": only counts in a batch rollout/);
  });

  test("go with the messages of their object; a single target is one wave", () => {
    const outcome = parse({ batch: "10%", maxErrors: 0 });
    assert.ok(outcome && "messages" in outcome);
    assert.deepEqual(outcome.rollout, { batch: { percent: 10 }, maxErrors: 0 });
    assert.equal(outcome.messages.length, 2);
    const one = parseMessages(
      JSON.stringify({ toNode: "a", method: "cliCommand", methodArgs: ["true"], batch: 5 }),
      defaults,
    )[0];
    assert.ok(one && "messages" in one);
    assert.deepEqual(one.rollout, { batch: { count: 5 } });
  });
});
