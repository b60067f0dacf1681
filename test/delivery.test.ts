/**
 * The delivery guarantees (docs/DELIVERY.md), against a real nats-server and real
 * nodes: a target that is down, the same id twice (input and wire), retries
 * spent, fire and forget, and isolation of slow messages. Every test counts
 * what happened to each message: its final state on the origin and how often
 * the command ran on the receiver (a line per run in a runs log).
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { methodSubject, methodSubscription } from "../src/delivery/subjects.js";
import { Fleet, frameBody, sleepUntil } from "../src/harness/fleet.js";
import { cmd, RunsLog } from "../src/harness/runs.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("delivery", ["central", "ship1", "ship2"]);
});
after(() => fleet.close());

const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** Send a message to `toNode` through central and wait for it to be done: after it, earlier work on that node has had its chance to run. */
async function marker(toNode: string, runs: RunsLog): Promise<string> {
  const [id] = await fleet.sendOk("central", cmd(toNode, runs.args(), { ACKTimeout: 5, retries: 10 }));
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done", `marker ${id}: ${JSON.stringify(m)}`);
  return id as string;
}

/** The raw text a node's socket answers to a document. */
function rawSubmit(socketPath: string, doc: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(socketPath);
    let out = "";
    s.setEncoding("utf8");
    s.on("connect", () => s.end(doc));
    s.on("data", (d: string) => {
      out += d;
    });
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

describe("a target that is down", () => {
  test("gets the message when it comes back, and runs it once", async () => {
    const runs = new RunsLog(fleet, "down-target");
    const ship1 = fleet.node("ship1");
    await ship1.stop();
    const [id] = await fleet.sendOk("central", cmd("ship1", runs.args("echo back"), { ACKTimeout: 1, retries: 60 }));
    // Re-sent while ship1 is away: still "sent", with more than one attempt behind it.
    let m = await fleet.status("central", id as string);
    await sleepUntil(
      async () => {
        m = await fleet.status("central", id as string);
        return m.state === "sent" && m.attempt >= 2;
      },
      { what: () => `message to be re-sent while ship1 is down (last: ${JSON.stringify(m)})` },
    );
    assert.equal(runs.count(id as string), 0, "ran although its target was down");
    await ship1.start();
    m = await fleet.waitState("central", id as string, undefined, 30_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.exitCode, 0);
    assert.equal(m.result?.data, "back\n");
    await marker("ship1", runs);
    assert.equal(runs.count(id as string), 1, "executions of the message");
  });

  test("is sent its pending message at once when it comes back, not after the next back-off (guarantee 3)", async () => {
    const runs = new RunsLog(fleet, "down-target-wake");
    const ship2 = fleet.node("ship2");
    await ship2.stop();
    // After the first failed attempt the sender waits ACKTimeout + retryWait = 301 s before the next:
    // only the "node is back" signal can bring it to ship2 within the test's wait.
    const [id] = await fleet.sendOk(
      "central",
      cmd("ship2", runs.args(), { ACKTimeout: 1, retries: 5, retryWait: 300 }),
    );
    await fleet.waitState("central", id as string, "sent");
    await ship2.start();
    const m = await fleet.waitState("central", id as string, undefined, 45_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    await marker("ship2", runs);
    assert.equal(runs.count(id as string), 1, "executions of the message");
  });
});

describe("one id, one execution (guarantee 4)", () => {
  test("the same client-chosen id submitted twice is accepted once and runs once", async () => {
    const runs = new RunsLog(fleet, "dup-input");
    const id = uid("dup");
    const doc = JSON.stringify(cmd("ship1", runs.args("echo once"), { id, ACKTimeout: 5, retries: 5 }));

    const first = await fleet.send("central", doc);
    assert.deepEqual(first, [{ ok: true, id, toNode: "ship1", method: "cliCommand" }]);
    // Again before it has finished, and again after.
    const second = await fleet.send("central", doc);
    assert.deepEqual(second, [{ ok: true, id, toNode: "ship1", method: "cliCommand", duplicate: true }]);
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "done", JSON.stringify(m));
    const third = await rawSubmit(fleet.node("central").socketPath, doc);
    assert.equal(third.trim(), `accepted ${id} ship1 cliCommand (already accepted)`);

    await marker("ship1", runs);
    assert.equal(runs.count(id), 1, "executions of the message");
    const after = await fleet.status("central", id);
    assert.equal(after.state, "done");
    assert.equal(after.result?.data, "once\n");
  });

  test("the same id twice in one batch: the second is the duplicate", async () => {
    const runs = new RunsLog(fleet, "dup-batch");
    const id = uid("dupbatch");
    const one = cmd("ship2", runs.args(), { id, ACKTimeout: 5, retries: 5 });
    const answers = await fleet.send("central", [one, one]);
    assert.deepEqual(answers, [
      { ok: true, id, toNode: "ship2", method: "cliCommand" },
      { ok: true, id, toNode: "ship2", method: "cliCommand", duplicate: true },
    ]);
    assert.equal((await fleet.waitState("central", id)).state, "done");
    await marker("ship2", runs);
    assert.equal(runs.count(id), 1, "executions of the message");
  });

  describe("at wire level", () => {
    let nc: NatsConnection;
    before(async () => {
      nc = await connect({ servers: fleet.broker.url, name: "delivery-test" });
    });
    after(async () => {
      await nc?.close();
    });

    const envelope = (id: string, runs: RunsLog, attempt: number) => ({
      id,
      fromNode: "central",
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: runs.args(),
      replyMethod: "none",
      replyMethodArgs: [],
      ACKTimeout: 5,
      retries: 3,
      retryWait: 0,
      replyACKTimeout: 1,
      replyRetries: 0,
      methodTimeout: 10,
      replyMethodTimeout: 10,
      attempt,
      deliverBy: Date.now() + 3_600_000,
    });

    /** Request ship1's cliCommand and decode the answer; re-asks while ship1 (just restarted) has no subscriber yet. */
    async function ask(env: unknown): Promise<unknown> {
      let answer: unknown;
      await sleepUntil(
        async () => {
          // Sent as central would send it: signed with central's own key, on its own subject to ship1.
          const subject = methodSubject("ship1", "cliCommand", "central");
          const r = await nc.request(subject, fleet.as("central").seal(subject, env), {
            timeout: 3000,
          });
          answer = frameBody(r.data);
          return true;
        },
        { timeoutMs: 20_000, intervalMs: 200, what: "an answer from ship1's cliCommand" },
      );
      return answer;
    }

    test("the same envelope twice is ACKed twice, with its id, and runs once — also after a restart", async () => {
      const runs = new RunsLog(fleet, "dup-wire");
      const id = uid("wire");
      assert.deepEqual(await ask(envelope(id, runs, 1)), { ack: id });
      assert.deepEqual(await ask(envelope(id, runs, 2)), { ack: id });
      await sleepUntil(() => runs.count(id) >= 1, { what: `a run of ${id} on ship1` });
      await marker("ship1", runs);
      assert.equal(runs.count(id), 1, "executions after two sends");

      const ship1 = fleet.node("ship1");
      await ship1.stop();
      await ship1.start();
      assert.deepEqual(await ask(envelope(id, runs, 3)), { ack: id });
      await marker("ship1", runs);
      assert.equal(runs.count(id), 1, "executions after a third send across a restart of ship1");
    });

    test("concurrent envelopes each get the ACK bound to their own id (guarantee 2)", async () => {
      const runs = new RunsLog(fleet, "ack-bound");
      const ids = Array.from({ length: 10 }, (_, i) => uid(`bound${i}`));
      const answers = await Promise.all(ids.map((id) => ask(envelope(id, runs, 1))));
      assert.deepEqual(
        answers,
        ids.map((id) => ({ ack: id })),
      );
      await sleepUntil(() => ids.every((id) => runs.count(id) >= 1), { what: "a run of every envelope" });
      await marker("ship1", runs);
      for (const id of ids) assert.equal(runs.count(id), 1, `executions of ${id}`);
    });
  });
});

describe("an ACK is bound to its message (guarantee 2)", () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await connect({ servers: fleet.broker.url, name: "impostor" });
  });
  after(async () => {
    await nc?.close();
  });

  test("an answer naming another id is not taken for the ACK: re-sent, then failed", async () => {
    // "impostor", an admitted node, answers every message with an ACK (signed) for some other message.
    const impostor = await fleet.peer("impostor");
    const seen: { id: string; attempt: number }[] = [];
    const sub = nc.subscribe(methodSubscription("impostor", "cliCommand"), {
      callback: (_err, msg) => {
        const env = frameBody(msg.data) as { id: string; attempt: number };
        seen.push({ id: env.id, attempt: env.attempt });
        msg.respond(impostor.seal(msg.reply as string, { ack: `not-${env.id}` }));
      },
    });
    await nc.flush();
    try {
      const [id] = await fleet.sendOk("central", cmd("impostor", ["true"], { ACKTimeout: 1, retries: 2 }));
      const m = await fleet.waitState("central", id as string, undefined, 30_000);
      assert.equal(m.state, "failed", JSON.stringify(m));
      assert.match(m.reason ?? "", /max retries reached/);
      assert.equal(m.attempt, 3);
      assert.deepEqual(
        seen.map((s) => s.id),
        [id, id, id],
        "sent three times, never taken as ACKed",
      );
    } finally {
      sub.unsubscribe();
    }
  });
});

test("retries spent: failed with 'max retries reached', and an error in central's error log (guarantee 3)", async () => {
  const [id] = await fleet.sendOk("central", cmd("nosuchnode", ["true"], { ACKTimeout: 1, retries: 2 }));
  const m = await fleet.waitState("central", id as string, undefined, 30_000);
  assert.equal(m.state, "failed", JSON.stringify(m));
  assert.match(m.reason ?? "", /max retries reached/);
  assert.equal(m.attempt, 3, "one attempt plus two retries");

  const errorLog = join(fleet.node("central").dataFolder, "errorLog", "central", "errorLog.log");
  await sleepUntil(() => existsSync(errorLog) && readFileSync(errorLog, "utf8").includes(id as string), {
    what: `an error line for ${id} in ${errorLog}`,
  });
  const line = readFileSync(errorLog, "utf8")
    .split("\n")
    .find((l) => l.includes(id as string));
  assert.match(line ?? "", /toNode: nosuchnode, fromNode: central, method: cliCommand.*max retries reached/);
});

test("ACKTimeout 0 (fire and forget) still runs once and reaches done through the reply", async () => {
  const runs = new RunsLog(fleet, "fire-and-forget");
  const [id] = await fleet.sendOk("central", cmd("ship2", runs.args("echo fired"), { ACKTimeout: 0, retries: 0 }));
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.attempt, 1);
  assert.equal(m.result?.data, "fired\n");
  await marker("ship2", runs);
  assert.equal(runs.count(id as string), 1, "executions of the message");
});

test("isolation: a slow message to ship1 does not hold up quick ones to ship1 and ship2 (guarantee 7)", async () => {
  const runs = new RunsLog(fleet, "isolation");
  const gate = join(runs.dir, "gate");
  // The slow one runs until the test opens the gate (it would end by methodTimeout otherwise).
  const [slow] = await fleet.sendOk(
    "central",
    cmd("ship1", runs.args(`while [ ! -e '${gate}' ]; do sleep 0.05; done; echo slow`), {
      methodTimeout: 30,
      ACKTimeout: 5,
      retries: 5,
    }),
  );
  await sleepUntil(() => runs.count(slow as string) === 1, { what: "the slow message to start on ship1" });
  // A message to a node that is not there, being retried, must not hold anything up either.
  const [stuck] = await fleet.sendOk("central", cmd("ghost", ["true"], { ACKTimeout: 2, retries: 3 }));

  const quick = await fleet.sendOk("central", [
    cmd("ship1", runs.args("echo quick1"), { ACKTimeout: 5, retries: 5 }),
    cmd("ship2", runs.args("echo quick2"), { ACKTimeout: 5, retries: 5 }),
  ]);
  for (const id of quick) {
    const m = await fleet.waitState("central", id, undefined, 20_000);
    assert.equal(m.state, "done", JSON.stringify(m));
  }
  const s = await fleet.status("central", slow as string);
  assert.ok(
    ["acked", "running"].includes(s.state),
    `the slow one is still under way while the quick ones are done: ${JSON.stringify(s)}`,
  );
  assert.ok(
    !["done", "failed"].includes((await fleet.status("central", stuck as string)).state),
    "the message to ghost is still being retried",
  );

  writeFileSync(gate, "");
  const done = await fleet.waitState("central", slow as string, undefined, 30_000);
  assert.equal(done.state, "done", JSON.stringify(done));
  assert.equal(done.result?.data, "slow\n");
  for (const id of [slow as string, ...quick]) assert.equal(runs.count(id), 1, `executions of ${id}`);
});
