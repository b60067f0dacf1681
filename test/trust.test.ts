/**
 * Node identity and central's trust, with real node processes, the real
 * `steward keys` commands and a plain NATS connection as the attacker: a
 * node's key file; a new node waiting for approval; a revoked node refused
 * everywhere within one bundle round; old, edited and forged bundles refused;
 * central's key pinned on first contact or given by the settings; and a node
 * that works from its last good bundle while central is away.
 *
 * One fleet for the whole file, its central approving keys by hand. The tests
 * build on each other in order: ship1 is approved, then revoked; ship2 stays.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { bundleBroadcast, bundleSubject } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import type { NodeProcess } from "../src/harness/nodeProcess.js";
import { type Bundle, BUNDLE_CONTEXT } from "../src/security/bundle.js";
import { readHeader, seal } from "../src/security/frame.js";
import { loadOrCreateIdentity } from "../src/security/identity.js";
import type { KeyRecord } from "../src/store/store.js";
import {
  bundleOf,
  droppedCount,
  logText,
  makeIdentity,
  sendQuick,
  show,
  stewardOn,
  waitBundle,
} from "./helpers/trust-helpers.js";

let fleet: Fleet;
let attacker: NatsConnection;
/** Every bundle central broadcast, as signed, with its version and the nodes it admits. */
const broadcasts: { bytes: Uint8Array; bundle: Bundle }[] = [];
const prom: Record<string, number> = {};

before(async () => {
  fleet = await Fleet.start("trust");
  // noEcho: what the attacker publishes on central's broadcast subject is not taken for one of central's broadcasts.
  attacker = await connect({ servers: fleet.broker.url, noEcho: true });
  attacker.subscribe(bundleBroadcast("central"), {
    callback: (err, msg) => {
      const header = err ? undefined : readHeader(msg.data);
      if (header)
        broadcasts.push({ bytes: msg.data, bundle: JSON.parse(Buffer.from(header.body).toString("utf8")) as Bundle });
    },
  });
  await attacker.flush();
  prom.ship1 = await freePort();
  prom.ship2 = await freePort();
  // logLevel debug: the tests see when central's outbox waits between two attempts.
  await fleet.add("central", { autoApproveKeys: 0, logLevel: "debug" });
});
after(async () => {
  await attacker?.close();
  await fleet?.close();
});

async function keys(): Promise<KeyRecord[]> {
  const r = await stewardOn(fleet, "central", ["keys", "list", "--json"]);
  assert.equal(r.code, 0, show(r));
  return (JSON.parse(r.stdout) as { keys: KeyRecord[] }).keys;
}

async function approve(node: string, ...flags: string[]): Promise<void> {
  const r = await stewardOn(fleet, "central", ["keys", "approve", node, ...flags]);
  assert.equal(r.code, 0, show(r));
}

/**
 * The public key a node logged at its start. Waited for: a node answers on its socket (which is what its
 * start waits for) a moment before its "ready" line is in the file.
 */
async function loggedKey(node: NodeProcess): Promise<string> {
  const ready = /"ready" publicKey=(\S+)/;
  await waitLog(node, ready);
  return (ready.exec(logText(node)) as RegExpExecArray)[1] as string;
}

async function waitLog(node: NodeProcess, re: RegExp): Promise<void> {
  await sleepUntil(() => re.test(logText(node)), {
    what: () => `${node.opts.nodeName} to log ${re}; log:\n${logText(node).slice(-2000)}`,
  });
}

async function expectDone(from: string, id: string): Promise<void> {
  const m = await fleet.waitState(from, id);
  assert.equal(m.state, "done", JSON.stringify(m));
}

/** Dropped unanswered: the sender's retries run out. */
async function expectUnanswered(from: string, id: string): Promise<void> {
  const m = await fleet.waitState(from, id);
  assert.equal(m.state, "failed", JSON.stringify(m));
  assert.match(m.reason ?? "", /^max retries reached/, JSON.stringify(m));
}

test("the first start creates configFolder/steward.key, readable by its owner only", async () => {
  const central = fleet.node("central");
  const file = join(central.opts.dir, "etc", "steward.key");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.match(readFileSync(file, "utf8"), /^-----BEGIN PRIVATE KEY-----/);
  assert.ok(
    logText(central).includes(`"created this node's key pair" file=${file} publicKey=${await loggedKey(central)}`),
  );
});

test("a key file others can read stops the node at start, with the chmod that fixes it", async () => {
  const etc = join(fleet.dir, "loose", "etc");
  mkdirSync(etc, { recursive: true });
  const file = join(etc, "steward.key");
  const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" });
  writeFileSync(file, pem);
  chmodSync(file, 0o644);
  await assert.rejects(fleet.add("loose"), /node loose exited during start/);
  const log = logText(fleet.node("loose"));
  assert.ok(log.includes(`run "chmod 600 ${file}"`), log);
  assert.match(log, /readable by other users \(mode 644\)/);
  assert.equal(readFileSync(file, "utf8"), pem, "the key is kept, not replaced");
});

test("a new node is not admitted until approved; then what waited for it goes by itself", async () => {
  const ship1 = await fleet.add("ship1", { promHostAndPort: `127.0.0.1:${prom.ship1}` });
  const key = await loggedKey(ship1);
  assert.equal(key, loadOrCreateIdentity(join(ship1.opts.dir, "etc"), "ship1").identity.publicKey);
  await sleepUntil(async () => (await keys()).some((k) => k.name === "ship1"), { what: "ship1's hello at central" });
  const rec = (await keys()).find((k) => k.name === "ship1");
  assert.deepEqual(rec && { state: rec.state, publicKey: rec.publicKey }, { state: "pending", publicKey: key });
  const table = await stewardOn(fleet, "central", ["keys", "list"]);
  assert.match(table.stdout, new RegExp(`^ship1 +pending +${key} `, "m"), show(table));
  assert.match(table.stdout, /^1 pending: steward keys approve NODE$/m, show(table));

  // Pending: ship1 holds no bundle, so it knows no central key and drops central's messages unanswered.
  // Central waits a minute between attempts (retryWait): only ship1's _online, once it has the bundle, cuts it short.
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["echo", "admitted"],
    ACKTimeout: 1,
    retryWait: 60,
    retries: 3,
  });
  await waitLog(
    ship1,
    /"dropped a message that failed verification" subject=ship1\.cliCommand\.central signer=central/,
  );
  await waitLog(fleet.node("central"), new RegExp(`"no ACK, will re-send" id=${id} toNode=ship1 attempt=1`));
  assert.equal((await fleet.status("central", id as string)).state, "sent");
  assert.equal(await bundleOf(ship1), 0);

  const r = await stewardOn(fleet, "central", ["keys", "approve", "ship1"]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, `approved ship1 (${key}); every node gets the new bundle now\n`);
  // Within the default 20 s of waitState: well before central's own minute is up.
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.data, "admitted\n");
  assert.equal(m.attempt, 2);
  assert.equal(await bundleOf(ship1), await bundleOf(fleet.node("central")));
});

test("a revoked node is refused by every other node once it has the next bundle", async () => {
  await fleet.add("ship2", { promHostAndPort: `127.0.0.1:${prom.ship2}` });
  await sleepUntil(async () => (await keys()).some((k) => k.name === "ship2"), { what: "ship2's hello at central" });
  await approve("ship2");
  const admitted = await waitBundle(fleet, ["ship1", "ship2"]);
  await expectDone("ship1", await sendQuick(fleet, "ship1", "ship2", "ping", [], { retries: 5 }));
  await expectDone("ship2", await sendQuick(fleet, "ship2", "ship1", "ping", [], { retries: 5 }));

  const unknownBefore = await droppedCount(prom.ship2 as number, "unknown signer");
  const r = await stewardOn(fleet, "central", ["keys", "revoke", "ship1"]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "revoked ship1; every node refuses it once it has the new bundle\n");
  const revoked = await waitBundle(fleet, ["ship2"]);
  assert.ok(revoked > admitted, `${revoked} > ${admitted}`);
  assert.equal((await keys()).find((k) => k.name === "ship1")?.state, "revoked");

  const [toShip2, toShip1] = await Promise.all([
    sendQuick(fleet, "ship1", "ship2", "ping"),
    // ship1 still takes central's messages, but central drops ship1's ACK: it signed it with a revoked key.
    sendQuick(fleet, "central", "ship1", "ping"),
  ]);
  await expectUnanswered("ship1", toShip2);
  await expectUnanswered("central", toShip1);
  assert.ok((await droppedCount(prom.ship2 as number, "unknown signer")) > unknownBefore);
  assert.match(
    logText(fleet.node("ship2")),
    /subject=ship2\.ping\.ship1 signer=ship1 reason="ship1 has no admitted key here"/,
  );
});

test("an older bundle, replayed, is not taken: the revoked node stays refused", async () => {
  const current = await bundleOf(fleet.node("central"));
  const old = broadcasts.filter((b) => b.bundle.nodes.ship1 !== undefined).at(-1);
  assert.ok(
    old,
    `a captured bundle that admits ship1 (captured: ${broadcasts.map((b) => b.bundle.version).join(", ")})`,
  );
  assert.ok(old.bundle.version < current);

  const marks = await Promise.all([
    droppedCount(prom.ship1 as number, "bad bundle"),
    droppedCount(prom.ship2 as number, "bad bundle"),
  ]);
  const subjects = [bundleSubject("ship1", "central"), bundleSubject("ship2", "central"), bundleBroadcast("central")];
  for (const subject of subjects) attacker.publish(subject, old.bytes);
  // A stale bundle is ignored without a word; an unsigned one after it, on the same subject from the same
  // connection, is counted: once it is, the replay before it was seen too.
  attacker.publish(bundleBroadcast("central"), "not a bundle");
  await sleepUntil(
    async () =>
      (await droppedCount(prom.ship1 as number, "bad bundle")) > marks[0] &&
      (await droppedCount(prom.ship2 as number, "bad bundle")) > marks[1],
    { what: "ship1 and ship2 to count the unsigned bundle sent after the replay" },
  );
  assert.equal(await bundleOf(fleet.node("ship1")), current);
  assert.equal(await bundleOf(fleet.node("ship2")), current);
  await expectUnanswered("ship1", await sendQuick(fleet, "ship1", "ship2", "ping"));
});

test("an edited bundle, or one a stranger signed as central, is refused and counted", async () => {
  const ship2 = fleet.node("ship2");
  const current = broadcasts.at(-1);
  assert.ok(current);
  const version = current.bundle.version;
  assert.equal(await bundleOf(ship2), version);
  const before = await droppedCount(prom.ship2 as number, "bad bundle");

  // Edited: a higher version and ship1 admitted again, the signature left as it was.
  const text = Buffer.from(current.bytes).toString("utf8");
  const header = text.slice(0, text.indexOf("\n") + 1);
  const body = JSON.parse(text.slice(header.length)) as Bundle;
  const ship1 = broadcasts.find((b) => b.bundle.nodes.ship1)?.bundle.nodes.ship1;
  assert.ok(ship1);
  const edited = { ...body, version: version + 10, nodes: { ...body.nodes, ship1 } };
  attacker.publish(bundleSubject("ship2", "central"), header + JSON.stringify(edited));

  // Forged: signed by a key of the attacker's own under central's name, admitting that key as central.
  const mallory = makeIdentity("central");
  const forged: Bundle = {
    ...edited,
    version: version + 20,
    nodes: { ...edited.nodes, central: { key: mallory.publicKey, groups: [], labels: {} } },
    acl: { rules: [{ from: ["*"], methods: ["*"], to: ["*"] }] },
  };
  attacker.publish(
    bundleSubject("ship2", "central"),
    seal(mallory, BUNDLE_CONTEXT, Buffer.from(JSON.stringify(forged))),
  );
  // And one signed as itself: only central signs bundles.
  attacker.publish(
    bundleSubject("ship2", "central"),
    seal(makeIdentity("mallory"), BUNDLE_CONTEXT, Buffer.from(JSON.stringify(forged))),
  );

  await sleepUntil(async () => (await droppedCount(prom.ship2 as number, "bad bundle")) >= before + 3, {
    what: "ship2 to count three bad bundles",
  });
  assert.equal(await bundleOf(ship2), version);
  await waitLog(
    ship2,
    /"dropped a message that failed verification" subject=ship2\._bundle\.central signer=central reason=.*signature does not match central's key/,
  );
  await waitLog(ship2, /signer=mallory reason="signed by mallory, not by central \(central\)"/);
  await expectUnanswered("ship1", await sendQuick(fleet, "ship1", "ship2", "ping"));
});

test("central's key: pinned on first contact, given by the settings, or not trusted at all", async () => {
  const central = (await keys()).find((k) => k.name === "central")?.publicKey ?? "";
  assert.match(central, /^[A-Za-z0-9_-]{43}$/);
  const wrong = makeIdentity("x").publicKey;
  const [ship3, ship4, ship5, ship6] = await Promise.all([
    fleet.add("ship3"),
    fleet.add("ship4", { pinCentralKey: 0 }),
    fleet.add("ship5", { pinCentralKey: 0, centralPublicKey: central }),
    fleet.add("ship6", { centralPublicKey: wrong }),
  ]);
  const names = ["ship3", "ship4", "ship5", "ship6"];
  await sleepUntil(async () => (await keys()).filter((k) => names.includes(k.name)).length === 4, {
    what: "hellos of ship3…ship6 at central",
  });
  for (const n of names) await approve(n);
  await waitBundle(fleet, ["ship3", "ship5"]);

  assert.equal(readFileSync(join(ship3.opts.dir, "etc", "central.pub"), "utf8").trim(), central);
  assert.ok(logText(ship3).includes(`PINNED central's key on first contact: central = ${central}.`), logText(ship3));
  assert.equal(existsSync(join(ship5.opts.dir, "etc", "central.pub")), false, "given, not pinned");

  // Central sends its bundle to each hello that shows an older one; these two keep refusing it.
  assert.match(
    logText(ship4),
    /"central's key is not known and pinCentralKey is 0: set centralPublicKey, or this node trusts no one"/,
  );
  await waitLog(
    ship4,
    /signer=central reason="central's key is not known here; set centralPublicKey \(pinCentralKey is off\)"/,
  );
  await waitLog(ship6, /signer=central reason="signature does not match central's key"/);
  assert.equal(await bundleOf(ship4), 0);
  assert.equal(await bundleOf(ship6), 0);
  assert.equal(existsSync(join(ship4.opts.dir, "etc", "central.pub")), false);
  assert.doesNotMatch(logText(ship6), /PINNED/);
  // Without a bundle they trust no one: central's messages go unanswered.
  await expectUnanswered("central", await sendQuick(fleet, "central", "ship6", "ping"));
});

test("a key approved by hand before the node's first hello: admitted from its first start", async () => {
  const etc = join(fleet.dir, "ship7", "etc");
  const { identity } = loadOrCreateIdentity(etc, "ship7");
  await approve("ship7", "--key", identity.publicKey, "--groups", "db,ops", "--labels", "site=north,role=db");
  const rec = (await keys()).find((k) => k.name === "ship7");
  assert.deepEqual(rec && { state: rec.state, key: rec.publicKey, groups: rec.groups, labels: rec.labels }, {
    state: "approved",
    key: identity.publicKey,
    groups: ["db", "ops"],
    labels: { site: "north", role: "db" },
  });
  const ship7 = await fleet.add("ship7");
  assert.equal(await loggedKey(ship7), identity.publicKey);
  await waitBundle(fleet, ["ship7"]);
  await expectDone("central", await sendQuick(fleet, "central", "ship7", "ping", [], { retries: 5 }));
  await expectDone("ship7", await sendQuick(fleet, "ship7", "ship2", "ping", [], { retries: 5 }));
});

test("keys commands say what is wrong and change nothing", async () => {
  const version = await bundleOf(fleet.node("central"));
  const cases: [string[], RegExp][] = [
    [["approve", "ghost"], /no key known for ghost: it has not said hello to central yet/],
    [["approve", "ghost", "--key", "not-a-key"], /--key: not an ed25519 public key/],
    [["revoke", "ghost"], /no key known for ghost/],
    [["revoke", "central"], /central's own key cannot be revoked/],
    [["approve", "ship2", "--labels", "site"], /--labels: "site" should be KEY=VALUE/],
    [["approve"], /steward keys approve NODE/],
  ];
  for (const [args, re] of cases) {
    const r = await stewardOn(fleet, "central", ["keys", ...args]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, re, show(r));
  }
  assert.equal(await bundleOf(fleet.node("central")), version, "no new bundle");
  assert.equal(
    (await keys()).some((k) => k.name === "ghost"),
    false,
  );
  const elsewhere = await stewardOn(fleet, "ship2", ["keys", "list"]);
  assert.notEqual(elsewhere.code, 0, show(elsewhere));
  assert.match(elsewhere.stderr, /keys and rules are kept on central \(central\)/);
});

test("a revoked key approved again is admitted again", async () => {
  await approve("ship1");
  await waitBundle(fleet, ["ship1", "ship2", "ship3"]);
  await expectDone("ship1", await sendQuick(fleet, "ship1", "ship2", "ping", [], { retries: 5 }));
  await expectDone("central", await sendQuick(fleet, "central", "ship1", "ping", [], { retries: 5 }));
  // Revoked once more, for the next test.
  const r = await stewardOn(fleet, "central", ["keys", "revoke", "ship1"]);
  assert.equal(r.code, 0, show(r));
  await waitBundle(fleet, ["ship2", "ship3"]);
});

test("a node works from its last good bundle while central is away, across its own restart", async () => {
  const held = await bundleOf(fleet.node("ship3"));
  await fleet.node("central").stop();
  const ship3 = fleet.node("ship3");
  await ship3.stop();
  await ship3.start();
  assert.equal(await bundleOf(ship3), held, "the bundle kept on disk");
  await expectDone("ship2", await sendQuick(fleet, "ship2", "ship3", "ping", [], { retries: 5 }));
  await expectDone("ship3", await sendQuick(fleet, "ship3", "ship2", "ping", [], { retries: 5 }));
  // The revocation holds too.
  await expectUnanswered("ship1", await sendQuick(fleet, "ship1", "ship3", "ping"));
});

test("central restarts with its registry: the same keys, the same rules, and a newer bundle for everyone", async () => {
  const central = fleet.node("central");
  const held = await bundleOf(fleet.node("ship2"));
  await central.start();
  const version = await waitBundle(fleet, ["ship2", "ship3"]);
  assert.ok(version > held, `${version} > ${held}`);
  const states = Object.fromEntries((await keys()).map((k) => [k.name, k.state]));
  assert.deepEqual(
    { ship1: states.ship1, ship2: states.ship2, ship3: states.ship3, loose: states.loose },
    { ship1: "revoked", ship2: "approved", ship3: "approved", loose: undefined },
  );
  await expectDone("central", await sendQuick(fleet, "central", "ship2", "ping", [], { retries: 5 }));
  await expectUnanswered("ship1", await sendQuick(fleet, "ship1", "ship2", "ping"));
});

test("a node that signs with Node's own crypto (no libsodium) and one with libsodium understand each other", async () => {
  const plain = await fleet.add("plain", {}, { env: { STEWARD_NO_SODIUM: "1" } });
  await stewardOn(fleet, "central", ["keys", "approve", "plain"]);
  await sleepUntil(async () => (await bundleOf(plain)) > 0, { what: "plain to take central's bundle" });
  const [toPlain] = await fleet.sendOk("central", {
    toNode: "plain",
    method: "cliCommand",
    methodArgs: ["echo", "hi"],
  });
  const m = await fleet.waitState("central", toPlain as string);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.data, "hi\n");
  const [fromPlain] = await fleet.sendOk("plain", { toNode: "central", method: "ping" });
  assert.equal((await fleet.waitState("plain", fromPlain as string)).state, "done");
});
