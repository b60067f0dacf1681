/**
 * `steward cancel`, end to end, against real nodes: a message withdrawn while
 * its target is away is never run there, not even when its first copy turns
 * up later; a running one has its process ended; a final one is left as it
 * is; filters pick only what they name; and only the node that sent a
 * message can cancel it.
 *
 * A negative ("not run") is shown with a positive signal: the receiver's
 * signed ACK of what it was sent, or a later message along the same path
 * that ran to the end, before the test looks for the marker file.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listMessages, type MessageView } from "../src/client/client.js";
import { methodSubject } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { newId } from "../src/message/id.js";
import type { Envelope } from "../src/message/message.js";
import { Attacker, forge, nodeIdentity, openAnswer } from "./helpers/attack-helpers.js";
import { runCli } from "./helpers/cli-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

let fleet: Fleet;
let attacker: Attacker;
let markers = "";

const marker = (name: string): string => join(markers, name);
const bash = (script: string): string[] => ["bash", "-c", script];
const by = `${userInfo().username}@central`;

before(async () => {
  fleet = await Fleet.start("cancel", ["central", "ship1", "ship2"]);
  markers = join(fleet.dir, "markers");
  mkdirSync(markers);
  attacker = await Attacker.connect(fleet.broker.url);
});

after(async () => {
  await attacker?.close();
  await fleet?.close();
});

/** `steward cancel ARGS…` on central, through its socket. */
function cancel(...args: string[]): ReturnType<typeof runCli> {
  return runCli(["cancel", ...args, "--socket-folder", join(fleet.node("central").opts.dir, "tmp")]);
}

/** Central sends one message; its id. */
async function send(fields: Record<string, unknown>): Promise<string> {
  const [id] = await fleet.sendOk("central", { replyMethod: "none", ...fields });
  return id as string;
}

/** A command on `to` runs to the end: the receiver has dealt with everything sent to it before. */
async function roundTrip(to: string): Promise<void> {
  const id = await send({ toNode: to, method: "cliCommand", methodArgs: ["echo", "legit"] });
  assert.equal((await fleet.waitState("central", id)).state, "done");
}

test("a message sent to a node that is away, cancelled, is never run there, not even when its first copy arrives later", async () => {
  const ship1 = fleet.node("ship1");
  const mark = marker("withdrawn");
  const copies = attacker.capture(methodSubject("ship1", "cliCommand", "central"));
  await ship1.stop();
  const id = await send({
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: bash(`touch ${mark}`),
    ACKTimeout: 1,
    retries: 100,
  });
  await fleet.waitState("central", id, "sent");
  await sleepUntil(() => copies.frames.length > 0, { what: "a copy of the message on the broker" });
  copies.stop();

  const out = await cancel(id);
  assert.equal(out.stdout, `${id} cancelled\n`, out.stderr);
  assert.equal(out.code, 0);
  const m = await fleet.status("central", id);
  assert.equal(m.state, "cancelled");
  assert.equal(m.reason, `cancelled by ${by}`);

  // It was sent, so it may have got there: a signed cancel follows it, and waits for ship1.
  const cancels = (await listMessages(fleet.node("central").socketPath)).filter((v) => v.method === "cancel");
  assert.equal(cancels.length, 1, JSON.stringify(cancels));
  const cancelId = (cancels[0] as { id: string }).id;
  await ship1.start();
  assert.equal((await fleet.waitState("central", cancelId)).state, "done");

  // The first copy, arriving now (a broker that held it, say), finds the tombstone: ACKed, not run.
  const copy = copies.frames[0] as { subject: string; data: Uint8Array };
  const sent = await attacker.request(copy.subject, copy.data);
  assert.deepEqual(openAnswer(await attacker.answer(sent), nodeIdentity(ship1)), { ack: id });
  await roundTrip("ship1");
  assert.equal(existsSync(mark), false);
  assert.equal((await fleet.status("central", id)).state, "cancelled");
});

test("a running command is cancelled: its process ends, the state says cancelled and by whom, the run's reply is kept", async () => {
  const pidFile = marker("running.pid");
  const id = await send({
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: bash(`echo $$ > ${pidFile}; exec sleep 30`),
    methodTimeout: 60,
    replyMethod: "none",
  });
  await fleet.waitState("central", id, "running");
  await sleepUntil(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "", { what: "the pid file" });
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  assert.ok(alive(pid), "the command runs");

  const out = await cancel(id);
  assert.equal(out.stdout, `${id} cancelled\n`, out.stderr);
  assert.equal(out.code, 0);
  await sleepUntil(() => !alive(pid), { what: `process ${pid} to end` });
  // ship1's reply comes back saying cancelled: the state stays cancelled, by whom it says, with the run's outcome.
  const last = await waitResult(id);
  assert.equal(last.state, "cancelled");
  assert.equal(last.reason, `cancelled by ${by}`);
  assert.equal(last.result?.cancelled, true, JSON.stringify(last));
});

test("a message waiting for a free run is cancelled: it never runs, and its reply says cancelled", async () => {
  await fleet.add("ship3", { maxConcurrentRuns: 1 });
  const hold = marker("slot");
  const mark = marker("waited");
  const blocker = await send({
    toNode: "ship3",
    method: "cliCommand",
    methodArgs: bash(`while [ ! -e ${hold} ]; do sleep 0.1; done`),
    methodTimeout: 60,
  });
  await fleet.waitState("central", blocker, "running");
  const id = await send({ toNode: "ship3", method: "cliCommand", methodArgs: bash(`touch ${mark}`) });
  await fleet.waitState("central", id, "waiting");

  const out = await cancel(id);
  assert.equal(out.stdout, `${id} cancelled\n`, out.stderr);
  const last = await waitResult(id);
  assert.equal(last.state, "cancelled");
  assert.equal(last.result?.cancelled, true, JSON.stringify(last));
  writeFileSync(hold, "");
  assert.equal((await fleet.waitState("central", blocker)).state, "done");
  await roundTrip("ship3");
  assert.equal(existsSync(mark), false);
});

test("cancelling a message that is done, or one never sent, changes nothing and says so", async () => {
  const id = await send({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "done already"] });
  await fleet.waitState("central", id, "done");
  const out = await cancel(id, "NO-SUCH-ID");
  assert.equal(out.stdout, `${id} already final (done)\nNO-SUCH-ID unknown\n`, out.stderr);
  assert.equal(out.code, 1);
  assert.equal((await fleet.status("central", id)).state, "done");
});

test("cancel --to NODE --state queued,sent cancels only that node's messages in those states", async () => {
  const ship2 = fleet.node("ship2");
  const hold = marker("hold");
  const running = await send({
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: bash(`while [ ! -e ${hold} ]; do sleep 0.1; done`),
    methodTimeout: 60,
  });
  await fleet.waitState("central", running, "running");
  await ship2.stop();
  const away = [
    await send({ toNode: "ship2", method: "cliCommand", methodArgs: ["echo", "a"], ACKTimeout: 1, retries: 100 }),
    await send({ toNode: "ship2", method: "ping", replyMethod: "pong", ACKTimeout: 1, retries: 100 }),
  ];
  for (const id of away) await fleet.waitState("central", id, "sent");

  const out = await cancel("--to", "ship2", "--state", "queued,sent");
  assert.deepEqual(out.stdout.trim().split("\n").sort(), away.map((id) => `${id} cancelled`).sort(), out.stderr);
  assert.equal(out.code, 0);
  for (const id of away) assert.equal((await fleet.status("central", id)).state, "cancelled");
  // Not to ship2: left alone, and it runs to the end.
  writeFileSync(hold, "");
  assert.equal((await fleet.waitState("central", running)).state, "done");
  // Nothing left to match.
  const again = await cancel("--to", "ship2", "--state", "sent");
  assert.equal(again.stdout, "no message matches\n");
  await ship2.start();
});

test("cancel --state takes the states steward status takes: a wrong or empty one is refused (exit 2), naming them all", async () => {
  const wrong = await cancel("--to", "ship2", "--state", "queued,finished");
  assert.equal(wrong.code, 2, wrong.stderr);
  assert.match(
    wrong.stderr,
    /--state: unknown state "finished"; the states are pending, queued, sent, acked, waiting, running, done, failed, expired, cancelled/,
  );
  // An empty --state does not drop the filter (which would cancel ship2's messages in every state).
  const empty = await cancel("--to", "ship2", "--state", "");
  assert.equal(empty.code, 2, empty.stderr);
  assert.match(empty.stderr, /--state: no state given; the states are pending, queued/);
  assert.equal(empty.stdout, "");
});

test("a cancel signed by another admitted node, or claiming to be central's, does not cancel central's message", async () => {
  const ship1 = nodeIdentity(fleet.node("ship1"));
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const go = marker("go");
  const mark = marker("not-cancelled");
  const id = await send({
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: bash(`while [ ! -e ${go} ]; do sleep 0.1; done; touch ${mark}`),
    methodTimeout: 60,
  });
  await fleet.waitState("central", id, "running");
  const forged = (fields: Partial<Envelope>) =>
    envelope({
      id: newId(),
      fromNode: "ship2",
      toNode: "ship1",
      method: "cancel",
      methodArgs: [id, "mallory"],
      ...fields,
    });
  // Claims central sent it, on central's subject and on its own: dropped (wrong signer), unanswered.
  const asCentral = methodSubject("ship1", "cancel", "central");
  const claimsCentral = await attacker.request(asCentral, forge(ship2, asCentral, forged({ fromNode: "central" })));
  const subject = methodSubject("ship1", "cancel", "ship2");
  const claimsOnOwn = await attacker.request(subject, forge(ship2, subject, forged({ fromNode: "central" })));
  // ship2's own cancel of that id: ACKed, but it can only touch ship2's messages (a tombstone for ship2's id).
  const own = forged({});
  const sent = await attacker.request(subject, forge(ship2, subject, own));
  // Frames from one connection reach ship1 in order: this ACK means the two before it were dealt with.
  assert.deepEqual(openAnswer(await attacker.answer(sent), ship1), { ack: own.id });
  assert.equal(claimsCentral.answers.length, 0);
  assert.equal(claimsOnOwn.answers.length, 0);

  assert.equal((await fleet.status("central", id)).state, "running");
  writeFileSync(go, "");
  const m = await fleet.waitState("central", id);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(existsSync(mark), true);
});

/** The message once its reply is back on central (a cancelled message keeps the result its reply carries). */
async function waitResult(id: string): Promise<MessageView> {
  let last = await fleet.status("central", id);
  await sleepUntil(
    async () => {
      last = await fleet.status("central", id);
      return last.result !== undefined;
    },
    { what: () => `the reply to ${id} (last: ${JSON.stringify(last)})` },
  );
  return last;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
