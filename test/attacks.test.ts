/**
 * The attacker's tests: someone who can reach the broker, with a plain NATS
 * connection and no Steward key — or keys they made themselves, or the key of
 * one admitted node they took over — against real node processes. Every attack must come to nothing: no command runs (each
 * would leave a marker file), no state moves in the origin's store, no
 * file is written.
 *
 * A negative is shown without timing it: the test waits for the victim's own
 * count of what it dropped unverified (steward_unverified_dropped_total), or
 * for the refusal it answered, then sends a legitimate message along the same
 * path, and only then looks for the marker, the state and the answers.
 *
 * Two fleets, started once: "attacks" (central, ship1, ship2, and ship3 and
 * ship4, whose clocks run five minutes ahead and behind), and "expiry", whose
 * central gives its messages 3 s to be delivered (maxMessageAge=3).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { health, query } from "../src/client/client.js";
import type { RunNotice } from "../src/delivery/runner.js";
import {
  bundleBroadcast,
  bundleSubject,
  methodSubject,
  methodSubscription,
  onlineSubject,
  stateSubject,
} from "../src/delivery/subjects.js";
import type { Ack, Presence } from "../src/delivery/wire.js";
import { encode } from "../src/delivery/wire.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { newId } from "../src/message/id.js";
import type { Envelope } from "../src/message/message.js";
import { type Bundle, BUNDLE_CONTEXT } from "../src/security/bundle.js";
import { seal } from "../src/security/frame.js";
import type { Identity } from "../src/security/identity.js";
import {
  Attacker,
  type Captured,
  filesContaining,
  forge,
  forgedIdentity,
  frameBody,
  Metrics,
  nodeIdentity,
  openAnswer,
  waitTrust,
} from "./helpers/attack-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

let fleet: Fleet;
let expiry: Fleet;
let attacker: Attacker;
let late: Attacker;
/** Metrics of the "attacks" fleet's central, ship1 and ship2, and of the "expiry" fleet's ship1 and ship2. */
const prom: Record<string, Metrics> = {};
/** ship4's genuine `_online` announcements, captured as it came up. */
let ship4Online: Captured[] = [];
/** Central's genuine bundles, captured as the nodes were admitted one by one. */
let bundles: Captured[] = [];
let markers = "";

const marker = (name: string): string => join(markers, name);
const touch = (path: string): string[] => ["bash", "-c", `touch ${path}`];
/** The header line of a frame, "SW1 <signer> <signature>\n", kept while its body is changed. */
const headerOf = (bytes: Uint8Array): Uint8Array => bytes.subarray(0, bytes.indexOf(10) + 1);
const metrics = (name: string): Metrics => {
  const m = prom[name];
  if (!m) throw new Error(`no metrics for ${name}`);
  return m;
};

before(async () => {
  const ports = await Promise.all(Array.from({ length: 5 }, () => freePort()));
  const at = (i: number) => ({ promHostAndPort: `127.0.0.1:${ports[i]}` });
  // Each kept as soon as it is up, so that `after` closes it even when the other one fails to start.
  await Promise.all([Fleet.start("attacks").then((f) => (fleet = f)), Fleet.start("expiry").then((f) => (expiry = f))]);
  markers = join(fleet.dir, "markers");
  mkdirSync(markers);
  attacker = await Attacker.connect(fleet.broker.url);
  late = await Attacker.connect(expiry.broker.url);
  ship4Online = attacker.capture(onlineSubject("ship4")).frames;
  bundles = attacker.capture(bundleBroadcast("central")).frames;
  await Promise.all([
    fleet.add("central", at(0)),
    // Only central may use cliCommand here, until central says otherwise (opProcessStart).
    fleet.add("ship1", { ...at(1), startSubREQCliCommand: "central" }),
    fleet.add("ship2", at(2)),
    fleet.add("ship3", {}, { env: { STEWARD_TEST_CLOCK_OFFSET: "300" } }),
    fleet.add("ship4", {}, { env: { STEWARD_TEST_CLOCK_OFFSET: "-300" } }),
    expiry.add("central", { maxMessageAge: 3 }),
    expiry.add("ship1", at(3)),
    expiry.add("ship2", at(4)),
  ]);
  ["central", "ship1", "ship2", "expiry ship1", "expiry ship2"].forEach((n, i) => {
    prom[n] = new Metrics(ports[i] as number);
  });
  await Promise.all([waitTrust(fleet, ["ship1", "ship2", "ship3", "ship4"]), waitTrust(expiry, ["ship1", "ship2"])]);
});

after(async () => {
  await Promise.allSettled([attacker?.close(), late?.close()]);
  await Promise.allSettled([fleet?.close(), expiry?.close()]);
});

/** Central runs a command on `to` and it comes back done: the legitimate path works, and the node has caught up. */
async function roundTrip(f: Fleet, to: string): Promise<void> {
  const [id] = await f.sendOk("central", {
    toNode: to,
    method: "cliCommand",
    methodArgs: ["echo", "legit"],
    replyMethod: "none",
  });
  const m = await f.waitState("central", id as string);
  assert.equal(m.state, "done", JSON.stringify(m));
}

test("a cliCommand claiming to come from central is dropped unanswered unless central's key signed it", async () => {
  const mark = marker("claims-central");
  // The subject names its sender: each frame goes on the one that names its signer, or on central's.
  const on = (sender: string) => methodSubject("ship1", "cliCommand", sender);
  const claim = () => envelope({ id: newId(), fromNode: "central", toNode: "ship1", methodArgs: touch(mark) });
  const dir = fleet.dir;
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const sent = await metrics("ship1").dropsDuring(
    { unsigned: 1, "bad signature": 1, "unknown signer": 1, "wrong signer": 2 },
    () =>
      Promise.all([
        attacker.request(on("central"), forge(undefined, on("central"), claim())),
        attacker.request(on("central"), forge(forgedIdentity(dir, "central"), on("central"), claim())),
        attacker.request(on("mallory"), forge(forgedIdentity(dir, "mallory"), on("mallory"), claim())),
        // Signed by an admitted node that claims to be central: on its own subject, and on central's.
        attacker.request(on("ship2"), forge(ship2, on("ship2"), claim())),
        attacker.request(on("central"), forge(ship2, on("central"), claim())),
      ]),
  );
  await roundTrip(fleet, "ship1");
  assert.deepEqual(
    sent.map((s) => s.answers.length),
    [0, 0, 0, 0, 0],
    "no ACK, no refusal",
  );
  assert.equal(existsSync(mark), false, "a forged cliCommand ran");
  assert.match(readFileSync(fleet.node("ship1").logPath, "utf8"), /dropped a message that failed verification/);
});

test("a bundle signed by a made-up central key, or an older genuine one, is not taken: mallory stays a stranger", async () => {
  const ship1 = fleet.node("ship1");
  const held = (await health(ship1.socketPath)).bundle;
  const mallory = forgedIdentity(fleet.dir, "mallory");
  const fakeCentral = forgedIdentity(fleet.dir, "central");
  const everyone = { rules: [{ from: ["*"], methods: ["*"], to: ["*"] }] };
  const nodes = { central: { key: fakeCentral.publicKey, groups: [], labels: {} } };
  const forged = {
    version: held + 1000,
    central: "central",
    issuedAt: Date.now(),
    nodes: { ...nodes, mallory: { key: mallory.publicKey, groups: [], labels: {} } },
    acl: everyone,
  } satisfies Bundle;
  assert.ok(bundles.length > 1, "central's earlier bundles were captured");
  await metrics("ship1").dropsDuring({ "bad bundle": 4 }, async () => {
    // An older genuine bundle first: ignored as stale, without a word; the forgeries after it are counted.
    for (const subject of [bundleBroadcast("central"), bundleSubject("ship1", "central")]) {
      attacker.nc.publish(subject, (bundles[0] as Captured).data);
      attacker.nc.publish(subject, encode(forged));
      attacker.nc.publish(subject, seal(fakeCentral, BUNDLE_CONTEXT, encode(forged)));
    }
    await attacker.nc.flush();
  });
  assert.equal((await health(ship1.socketPath)).bundle, held);

  // mallory, whom the forged bundle would have admitted with every right, is still unknown to ship1.
  const mark = marker("mallory");
  const subject = methodSubject("ship1", "cliCommand", "mallory");
  const body = envelope({ id: newId(), fromNode: "mallory", toNode: "ship1", methodArgs: touch(mark) });
  const sent = await metrics("ship1").dropsDuring({ "unknown signer": 1 }, () =>
    attacker.request(subject, forge(mallory, subject, body)),
  );
  await roundTrip(fleet, "ship1");
  assert.equal(sent.answers.length, 0);
  assert.equal(existsSync(mark), false);
});

test("a hello in ship1's name with another key does not change the key central holds for ship1", async () => {
  const central = fleet.node("central");
  const keyOf = async (name: string) =>
    (await query(central.socketPath, "keys", {})).keys.find((k) => k.name === name)?.publicKey;
  const genuine = await keyOf("ship1");
  const fake = forgedIdentity(fleet.dir, "ship1");
  const hello = envelope({
    id: newId(),
    fromNode: "ship1",
    toNode: "central",
    method: "hello",
    data: JSON.stringify({ publicKey: fake.publicKey, bundle: 0, at: Date.now() + 3_600_000 }),
  });
  const subject = methodSubject("central", "hello", "ship1");
  // Unsigned, signed with the attacker's own ship1 key, and signed by ship2 (admitted) on ship1's subject.
  await metrics("central").dropsDuring({ unsigned: 1, "bad signature": 1, "wrong signer": 1 }, async () => {
    attacker.nc.publish(subject, forge(undefined, subject, hello));
    attacker.nc.publish(subject, forge(fake, subject, hello));
    attacker.nc.publish(subject, forge(nodeIdentity(fleet.node("ship2")), subject, hello));
    await attacker.nc.flush();
  });
  assert.equal(await keyOf("ship1"), genuine);
  await roundTrip(fleet, "ship1");
});

test("opProcessStart cannot open cliCommand to other nodes: forged, from an admitted node, or even from central", async () => {
  const on = (sender: string) => methodSubject("ship1", "opProcessStart", sender);
  const open = (fromNode: string) =>
    envelope({
      id: newId(),
      fromNode,
      toNode: "ship1",
      method: "opProcessStart",
      methodArgs: ["cliCommand", "*"],
    });
  const sent = await metrics("ship1").dropsDuring({ unsigned: 1, "unknown signer": 1 }, () =>
    Promise.all([
      attacker.request(on("central"), forge(undefined, on("central"), open("central"))),
      attacker.request(on("mallory"), forge(forgedIdentity(fleet.dir, "mallory"), on("mallory"), open("mallory"))),
    ]),
  );
  assert.deepEqual(
    sent.map((s) => s.answers.length),
    [0, 0],
  );
  // ship1's own allowedNodes for cliCommand are still as it was started.
  const [list] = await fleet.sendOk("central", { toNode: "ship1", method: "opProcessList" });
  const listed = await fleet.waitState("central", list as string);
  assert.match(listed.result?.data ?? "", /subscriber cliCommand allowedNodes=central /);

  // An admitted node asks through its own node: central's rules refuse it.
  const [byShip2] = await fleet.sendOk("ship2", {
    toNode: "ship1",
    method: "opProcessStart",
    methodArgs: ["cliCommand", "*"],
  });
  const refused = await fleet.waitState("ship2", byShip2 as string);
  assert.equal(refused.state, "failed");
  assert.equal(refused.reason, "not allowed: ship2 may not call opProcessStart on ship1");

  // Central opens ship1's cliCommand to every node: the rules still say no to ship2.
  const [byCentral] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "opProcessStart",
    methodArgs: ["cliCommand", "*"],
  });
  assert.equal((await fleet.waitState("central", byCentral as string)).state, "done");
  const mark = marker("opened");
  const [id] = await fleet.sendOk("ship2", { toNode: "ship1", method: "cliCommand", methodArgs: touch(mark) });
  const m = await fleet.waitState("ship2", id as string);
  assert.equal(m.state, "failed", JSON.stringify(m));
  assert.ok(m.reason?.startsWith("not allowed: ship2 may not call cliCommand on ship1"), m.reason ?? "");
  assert.equal(existsSync(mark), false);
});

test("a captured cliCommand replayed verbatim is a duplicate (ACKed by ship1, not run again); with a new id it is dropped", async () => {
  const ship1 = fleet.node("ship1");
  const mark = marker("appended");
  const cap = attacker.capture(methodSubscription("ship1", "cliCommand"));
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", `echo run >> ${mark}`],
  });
  assert.equal((await fleet.waitState("central", id as string)).state, "done");
  cap.stop();
  const frame = cap.frames.find((f) => frameBody(f.data).id === id);
  assert.ok(frame, "the genuine frame was captured");

  // A new id: the body changed, the signature no longer matches it.
  const renamed = Buffer.concat([headerOf(frame.data), encode({ ...frameBody(frame.data), id: newId() })]);
  const fresh = await metrics("ship1").dropsDuring({ "bad signature": 1 }, () =>
    attacker.request(frame.subject, renamed),
  );
  // Verbatim: ship1 ACKs (and signs the ACK of) a message it already holds, and does not run it again.
  const again = await attacker.request(frame.subject, frame.data);
  assert.deepEqual(openAnswer(await attacker.answer(again), nodeIdentity(ship1)), { ack: id });
  await roundTrip(fleet, "ship1");
  assert.equal(fresh.answers.length, 0);
  assert.equal(readFileSync(mark, "utf8"), "run\n", "the command ran once");
  assert.equal((await fleet.status("central", id as string)).state, "done");
});

test("an admitted node's message with fields its own input would refuse is refused (signed), not run", async () => {
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const ship1 = nodeIdentity(fleet.node("ship1"));
  const mark = marker("bad-fields");
  // Any admitted node may ping another: only the bad field stands between these and a run.
  const ping = (fields: Partial<Envelope> = {}) =>
    envelope({ id: newId(), fromNode: "ship2", toNode: "ship1", method: "ping", replyMethod: "pong", ...fields });
  const pingSubject = methodSubject("ship1", "ping", "ship2");
  const cases: [string, Envelope, RegExp][] = [
    [pingSubject, ping({ schedule: [-1, 1] }), /^bad message: field "schedule": expected \[interval, total\]/],
    [pingSubject, ping({ schedule: [0, 1] }), /^bad message: field "schedule": .*interval 1 or more/],
    [pingSubject, ping({ methodTimeout: -2 }), /^bad message: field "methodTimeout": must be -1 or more/],
    [pingSubject, ping({ method: "nope" as Envelope["method"] }), /^method nope sent on the subject of ping/],
    [pingSubject, ping({ toNode: "../x" }), /^bad message: toNode /],
    [
      methodSubject("ship1", "cliCommand", "ship2"),
      ping({ method: "cliCommand", replyMethod: "none", methodArgs: touch(mark), schedule: [-1, 1] }),
      /^bad message: field "schedule": /,
    ],
  ];
  for (const [subject, body, reason] of cases) {
    const sent = await attacker.request(subject, forge(ship2, subject, body));
    const answer = openAnswer(await attacker.answer(sent), ship1) as Ack;
    assert.ok("refused" in answer, JSON.stringify(answer));
    assert.match(answer.refused, reason);
    assert.equal(answer.id, body.id);
  }
  // The same ping without a bad field is taken and run: the refusals were about those fields.
  const good = ping();
  const sent = await attacker.request(pingSubject, forge(ship2, pingSubject, good));
  assert.deepEqual(openAnswer(await attacker.answer(sent), ship1), { ack: good.id });
  const executed = (method: string) =>
    metrics("ship1").value(`steward_messages_executed_total{method="${method}",from_node="ship2"}`);
  await sleepUntil(async () => (await executed("ping")) === 1, { what: "ship1 to run ship2's one good ping" });
  assert.equal(await executed("cliCommand"), 0);
  assert.equal(existsSync(mark), false);
});

test("ship2's frame on a subject that names central as its sender is dropped unanswered, edited or signed so", async () => {
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const asCentral = methodSubject("ship1", "ping", "central");
  const executed = () => metrics("ship1").value(`steward_messages_executed_total{method="ping",from_node="ship2"}`);
  // A genuine ping of ship2's, captured on its way to ship1.
  const cap = attacker.capture(methodSubscription("ship1", "ping"));
  const [id] = await fleet.sendOk("ship2", { toNode: "ship1", method: "ping" });
  assert.equal((await fleet.waitState("ship2", id as string)).state, "done");
  cap.stop();
  const frame = cap.frames.find((f) => frameBody(f.data).id === id);
  assert.ok(frame, "ship2's genuine ping was captured");
  assert.equal(frame.subject, methodSubject("ship1", "ping", "ship2"));
  const ran = await executed();

  const fresh = envelope({ id: newId(), fromNode: "ship2", toNode: "ship1", method: "ping", replyMethod: "pong" });
  const sent = await metrics("ship1").dropsDuring({ "bad signature": 1, "wrong signer": 1 }, () =>
    Promise.all([
      // The subject edited: ship2's signature covers the subject it signed for.
      attacker.request(asCentral, frame.data),
      // Signed by ship2 for central's subject: a valid signature, but not by the sender the subject names.
      attacker.request(asCentral, forge(ship2, asCentral, fresh)),
    ]),
  );
  await roundTrip(fleet, "ship1");
  assert.deepEqual(
    sent.map((s) => s.answers.length),
    [0, 0],
    "no ACK, no refusal",
  );
  assert.equal(await executed(), ran, "neither ran");
});

test("forged replies to central's request change neither its state nor its result, nor write a file", async () => {
  const central = fleet.node("central");
  const ship1Key = forgedIdentity(fleet.dir, "ship1");
  const mallory = forgedIdentity(fleet.dir, "mallory");
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const go = marker("go");
  // The command waits for the test: its genuine reply comes only after the forgeries.
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", `while [ ! -e ${go} ]; do sleep 0.05; done; echo genuine`],
  });
  await fleet.waitState("central", id as string, "running");
  const reply = (method: Envelope["method"], fromNode = "ship1") =>
    envelope({
      id: newId(),
      fromNode,
      toNode: "central",
      method,
      requestId: id,
      result: { exitCode: 0 },
      data: "forged\n",
    });
  const methods = ["fileAppend", "file", "console", "none"] as const;
  const on = (method: Envelope["method"], sender: string) => methodSubject("central", method, sender);
  const dropped = await metrics("central").dropsDuring(
    { unsigned: 4, "bad signature": 4, "unknown signer": 1, "wrong signer": 2 },
    () =>
      Promise.all([
        ...methods.flatMap((m) => [
          attacker.request(on(m, "ship1"), forge(undefined, on(m, "ship1"), reply(m))),
          attacker.request(on(m, "ship1"), forge(ship1Key, on(m, "ship1"), reply(m))),
        ]),
        attacker.request(on("fileAppend", "mallory"), forge(mallory, on("fileAppend", "mallory"), reply("fileAppend"))),
        // ship2 (admitted) claims to be ship1: on its own subject, and on ship1's.
        attacker.request(on("fileAppend", "ship2"), forge(ship2, on("fileAppend", "ship2"), reply("fileAppend"))),
        attacker.request(on("fileAppend", "ship1"), forge(ship2, on("fileAppend", "ship1"), reply("fileAppend"))),
      ]),
  );
  assert.deepEqual(
    dropped.map((s) => s.answers.length),
    dropped.map(() => 0),
  );
  // ship2 replying in its own name to a request that went to ship1: refused, answered.
  const own = reply("fileAppend", "ship2");
  const refusal = await attacker.request(on("fileAppend", "ship2"), forge(ship2, on("fileAppend", "ship2"), own));
  const answer = openAnswer(await attacker.answer(refusal), nodeIdentity(central)) as Ack;
  assert.ok(
    "refused" in answer && /answers no fileAppend request of central/.test(answer.refused),
    JSON.stringify(answer),
  );

  const waiting = await fleet.status("central", id as string);
  assert.equal(waiting.state, "running");
  assert.equal(waiting.result, undefined);
  writeFileSync(go, "");
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.data, "genuine\n");
  assert.deepEqual(filesContaining(central.dataFolder, "forged"), []);
  assert.doesNotMatch(central.stdout, /forged/);
});

test("a failed message is not flipped to done by a forged reply, nor by its genuine reply replayed", async () => {
  const central = fleet.node("central");
  const cap = attacker.capture(methodSubscription("central", "fileAppend"));
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["/nonexistent/steward-attack"],
  });
  const failed = await fleet.waitState("central", id as string);
  assert.equal(failed.state, "failed", JSON.stringify(failed));
  cap.stop();
  const genuine = cap.frames.find((f) => frameBody(f.data).requestId === id);
  assert.ok(genuine, "the genuine reply was captured");
  const results = filesContaining(central.dataFolder, "");
  const before = results.map((f) => readFileSync(f, "utf8"));

  const forged = envelope({
    id: newId(),
    fromNode: "ship1",
    toNode: "central",
    method: "fileAppend",
    requestId: id,
    result: { exitCode: 0 },
    data: "forged\n",
  });
  const subject = methodSubject("central", "fileAppend", "ship1");
  const sent = await metrics("central").dropsDuring({ unsigned: 1, "bad signature": 1 }, () =>
    Promise.all([
      attacker.request(subject, forge(undefined, subject, forged)),
      attacker.request(subject, forge(forgedIdentity(fleet.dir, "ship1"), subject, forged)),
    ]),
  );
  // The genuine reply again: a duplicate, ACKed by central and not run again.
  const replayed = await attacker.request(subject, genuine.data);
  assert.deepEqual(openAnswer(await attacker.answer(replayed), nodeIdentity(central)), {
    ack: frameBody(genuine.data).id,
  });
  await roundTrip(fleet, "ship1");
  assert.deepEqual(
    sent.map((s) => s.answers.length),
    [0, 0],
  );
  const after = await fleet.status("central", id as string);
  assert.equal(after.state, "failed");
  assert.equal(after.reason, failed.reason);
  assert.deepEqual(
    results.map((f) => readFileSync(f, "utf8")),
    before,
    "a result file changed",
  );
  assert.deepEqual(filesContaining(central.dataFolder, "forged"), []);
});

test("forged ACKs and refusals for an offline node leave the message waiting; it is done once the node is back", async () => {
  const ship2 = fleet.node("ship2");
  await ship2.stop();
  const mark = marker("for-ship2");
  const fakeShip2 = forgedIdentity(fleet.dir, "ship2");
  const ship1 = nodeIdentity(fleet.node("ship1"));
  // One forged answer per attempt, each signed for the attempt's own reply subject.
  const forgeries: ((reply: string, id: string) => Uint8Array)[] = [
    (r, id) => forge(undefined, r, { ack: id }),
    (r, id) => forge(fakeShip2, r, { ack: id }),
    (r, id) => forge(forgedIdentity(fleet.dir, "mallory"), r, { ack: id }),
    (r, id) => forge(ship1, r, { ack: id }),
    (r, id) => forge(undefined, r, { refused: "forged refusal", id }),
    (r, id) => forge(fakeShip2, r, { refused: "forged refusal", id }),
  ];
  let answered = 0;
  const sub = attacker.nc.subscribe(methodSubscription("ship2", "cliCommand"), {
    callback: (_err, msg) => {
      const f = forgeries[answered];
      if (!f || !msg.reply) return;
      answered++;
      msg.respond(f(msg.reply, String(frameBody(msg.data).id)));
    },
  });
  let id = "";
  try {
    await attacker.nc.flush();
    await metrics("central").dropsDuring(
      { unsigned: 2, "bad signature": 2, "unknown signer": 1, "wrong signer": 1 },
      async () => {
        [id = ""] = await fleet.sendOk("central", {
          toNode: "ship2",
          method: "cliCommand",
          methodArgs: touch(mark),
          ACKTimeout: 1,
          retries: 60,
          retryWait: 0,
        });
      },
    );
  } finally {
    sub.unsubscribe();
  }
  const m = await fleet.status("central", id);
  assert.equal(m.state, "sent", JSON.stringify(m));
  assert.ok(m.attempt >= forgeries.length, JSON.stringify(m));
  assert.equal(existsSync(mark), false);

  await ship2.start();
  const done = await fleet.waitState("central", id);
  assert.equal(done.state, "done", JSON.stringify(done));
  assert.equal(existsSync(mark), true, "the genuine delivery ran");
});

test("nodes whose clocks are five minutes ahead or behind exchange messages with central both ways", async () => {
  const pings = attacker.capture(methodSubscription("central", "ping"));
  const sends = ["ship3", "ship4"].flatMap((n) => [
    fleet
      .sendOk("central", { toNode: n, method: "cliCommand", methodArgs: ["echo", n] })
      .then(([id]) => ["central", id]),
    fleet.sendOk(n, { toNode: "central", method: "ping" }).then(([id]) => [n, id]),
  ]);
  for (const [from, id] of await Promise.all(sends)) {
    const m = await fleet.waitState(from as string, id as string);
    assert.equal(m.state, "done", `${from}: ${JSON.stringify(m)}`);
  }
  pings.stop();
  // Their clocks are off indeed: each one's deadline (its clock + the default 7 days) shows it.
  const week = 7 * 24 * 3600 * 1000;
  for (const [node, offset] of [
    ["ship3", 300_000],
    ["ship4", -300_000],
  ] as const) {
    const ping = pings.frames.map((f) => frameBody(f.data)).find((b) => b.fromNode === node);
    const skew = Number(ping?.deliverBy) - week - Date.now();
    assert.ok(Math.abs(skew - offset) < 60_000, `${node}'s clock is ${skew} ms off, expected about ${offset}`);
  }
});

test("forged running notices do not move central's message to running, nor stop its retries", async () => {
  // ship4 stays offline for this test and the next.
  await fleet.node("ship4").stop();
  const [id = ""] = await fleet.sendOk("central", {
    toNode: "ship4",
    method: "cliCommand",
    methodArgs: ["echo", "for ship4"],
    ACKTimeout: 1,
    retries: 60,
    retryWait: 0,
  });
  await fleet.waitState("central", id, "sent");
  // Unsigned, signed with a made-up ship4 key, and signed by ship2 (admitted, but not where the message went):
  // on ship2's own subject, and on ship4's.
  const notice: RunNotice = { id, state: "running" };
  const ship2 = nodeIdentity(fleet.node("ship2"));
  const forgeries: [Identity | undefined, string][] = [
    [undefined, "ship4"],
    [forgedIdentity(fleet.dir, "ship4"), "ship4"],
    [ship2, "ship2"],
    [ship2, "ship4"],
  ];
  await metrics("central").dropsDuring({ unsigned: 1, "bad signature": 1, "wrong signer": 2 }, async () => {
    for (const [as, sender] of forgeries) {
      const subject = stateSubject("central", sender);
      attacker.nc.publish(subject, forge(as, subject, notice));
    }
    await attacker.nc.flush();
  });
  const m = await fleet.status("central", id);
  assert.equal(m.state, "sent", JSON.stringify(m));
  // Its retries go on: a message taken for running would never be sent again.
  await sleepUntil(async () => (await fleet.status("central", id)).attempt > m.attempt, {
    what: `attempt ${m.attempt + 1} of ${id}`,
  });
});

test("a flood of ship4's _online, forged or replayed, does not burn a message's retries", async () => {
  const ship4 = fleet.node("ship4");
  const mark = marker("for-ship4");
  const ACKTimeout = 2;
  const retryWait = 5;
  const started = Date.now();
  const [id = ""] = await fleet.sendOk("central", {
    toNode: "ship4",
    method: "cliCommand",
    methodArgs: touch(mark),
    ACKTimeout,
    retries: 3,
    retryWait,
  });
  await fleet.waitState("central", id, "sent");
  const fakeShip4 = forgedIdentity(fleet.dir, "ship4");

  // ship4 is "back", again and again: unsigned, with a made-up key, and its genuine announcements replayed
  // (it made several: one when it connected, one for each bundle it took).
  const subject = onlineSubject("ship4");
  const genuine = ship4Online.filter((f) => f.subject === subject);
  assert.ok(genuine.length > 0, "ship4's genuine _online was captured");
  await metrics("central").dropsDuring({ unsigned: 1, "bad signature": 1 }, async () => {
    const until = Date.now() + 3000;
    for (let at = Date.now() + 3_600_000; Date.now() < until; at += 2) {
      attacker.nc.publish(subject, forge(undefined, subject, { node: "ship4", at } satisfies Presence));
      attacker.nc.publish(subject, forge(fakeShip4, subject, { node: "ship4", at: at + 1 } satisfies Presence));
      for (const f of genuine) attacker.nc.publish(subject, f.data);
      await attacker.nc.flush();
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  const m = await fleet.status("central", id);
  const elapsed = Date.now() - started;
  // One attempt per ACKTimeout + retryWait, plus one each genuine announcement may bring forward the first time it
  // is seen (its `at` is news): such a re-send does not count against retries, forged or replayed ones wake nothing.
  const most = 1 + Math.floor(elapsed / ((ACKTimeout + retryWait) * 1000)) + genuine.length;
  assert.ok(
    m.attempt <= most,
    `${m.attempt} attempts in ${elapsed} ms, at most ${most} expected (${genuine.length} genuine _online replayed)`,
  );
  // Not failed: without the rule above, 1 + retries attempts would be spent by now.
  assert.equal(m.state, "sent", JSON.stringify(m));

  // Still being delivered: once ship4 is back, it is done.
  await ship4.start();
  const done = await fleet.waitState("central", id);
  assert.equal(done.state, "done", JSON.stringify(done));
  assert.equal(existsSync(mark), true);
});

describe("a genuine frame captured while ship1 was offline, after its message expired on central", () => {
  let frame: Captured;
  let id = "";
  let mark = "";

  before(async () => {
    const ship1 = expiry.node("ship1");
    mark = marker("expired");
    await ship1.stop();
    const cap = late.capture(methodSubscription("ship1", "cliCommand"));
    // The attacker's subscriber answers nothing: each attempt waits its ACKTimeout, until 3 s are gone.
    [id = ""] = await expiry.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: touch(mark),
      ACKTimeout: 1,
      retries: 20,
      retryWait: 0,
    });
    const m = await expiry.waitState("central", id);
    assert.equal(m.state, "expired", JSON.stringify(m));
    cap.stop();
    const frames = cap.frames.filter((f) => frameBody(f.data).id === id);
    assert.ok(frames.length > 0, "the genuine frame was captured");
    frame = frames[frames.length - 1] as Captured;
    await ship1.start();
  });

  test("any field, the subject or the signer's name changed: dropped unanswered, not run", async () => {
    const header = headerOf(frame.data);
    const body = frameBody(frame.data);
    const rebody = (value: unknown) => Buffer.concat([header, encode(value)]);
    const variants: [string, string, Uint8Array][] = Object.keys(body).map((key) => [
      `field ${key}`,
      frame.subject,
      rebody({ ...body, [key]: changed(key, body[key]) }),
    ]);
    const { deliverBy: _, ...noDeadline } = body;
    variants.push(
      ["a field added", frame.subject, rebody({ ...body, directory: "x" })],
      ["deliverBy removed", frame.subject, rebody(noDeadline)],
      ["a space after the body", frame.subject, Buffer.concat([frame.data, Buffer.from(" ")])],
      ["another method's subject", methodSubject("ship1", "ping", "central"), frame.data],
      ["another sender's subject", methodSubject("ship1", "cliCommand", "ship2"), frame.data],
      ["signed by ship2, says the header", frame.subject, resign(frame.data, "ship2")],
    );
    const ship1 = metrics("expiry ship1");
    const ship2 = metrics("expiry ship2");
    const [sent, toShip2, unknown] = await ship1.dropsDuring(
      { "bad signature": variants.length, "unknown signer": 1 },
      () =>
        ship2.dropsDuring({ "bad signature": 1 }, () =>
          Promise.all([
            Promise.all(variants.map(([, subject, bytes]) => late.request(subject, bytes))),
            late.request(methodSubject("ship2", "cliCommand", "central"), frame.data),
            late.request(frame.subject, resign(frame.data, "mallory")),
          ]),
        ),
    );
    await roundTrip(expiry, "ship1");
    for (const [i, s] of sent.entries()) assert.equal(s.answers.length, 0, `${variants[i]?.[0]} was answered`);
    assert.equal(toShip2.answers.length, 0);
    assert.equal(unknown.answers.length, 0);
    assert.equal(existsSync(mark), false);
  });

  test("replayed verbatim after its deadline: ship1 answers it expired, and does not run it", async () => {
    const sent = await late.request(frame.subject, frame.data);
    const answer = openAnswer(await late.answer(sent), nodeIdentity(expiry.node("ship1"))) as Ack;
    assert.ok("refused" in answer && answer.refused.startsWith("expired: "), JSON.stringify(answer));
    assert.equal(answer.id, id);
    await roundTrip(expiry, "ship1");
    assert.equal(existsSync(mark), false);
    assert.equal((await expiry.status("central", id)).state, "expired");
  });
});

/** A different value of the same kind, chosen as an attacker would (a later deadline, another command). */
function changed(key: string, value: unknown): unknown {
  if (key === "deliverBy") return Date.now() + 3_600_000;
  if (key === "methodArgs") return ["bash", "-c", "id"];
  if (key === "id") return newId();
  if (typeof value === "number") return value + 1;
  if (typeof value === "string") return `${value}x`;
  if (Array.isArray(value)) return [...(value as unknown[]), "x"];
  if (typeof value === "boolean") return !value;
  return { ...(value as object), x: 1 };
}

/** The same frame under another signer's name in its header (the signature stays). */
function resign(bytes: Uint8Array, signer: string): Uint8Array {
  const [magic, , signature] = Buffer.from(headerOf(bytes)).toString("latin1").split(" ");
  return Buffer.concat([Buffer.from(`${magic} ${signer} ${signature}`), bytes.subarray(headerOf(bytes).length)]);
}
