/**
 * `steward broker-config` and a real nats-server running the configuration it writes: the fleet's
 * normal traffic flows (messages, ACKs, replies, running notices, hellos and bundles, the error log,
 * presence), and a stolen node credential, used from a plain NATS client, can neither read another
 * node's subjects or inbox nor publish under another node's name.
 */
import { connect, type NatsConnection, nkeyAuthenticator, PermissionViolationError } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { methodSubject, stateSubject } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { findNatsServer } from "../src/harness/natsServer.js";
import { runCli } from "./helpers/cli-helpers.js";
import { logText, show } from "./helpers/trust-helpers.js";

let fleet: Fleet;
const out = mkdtempSync(join(tmpdir(), "steward-broker-config-"));
const conf = join(out, "nats-server.conf");
const seedFile = (node: string) => join(out, `${node}.nk`);
const publicKey = (node: string) =>
  new RegExp(`# ${node}\\n\\s*\\{\\n\\s*nkey: "(U[A-Z0-9]+)"`).exec(readFileSync(conf, "utf8"))?.[1];

before(async () => {
  const r = await runCli(["broker-config", "--out", out, "ship1", "ship2"]);
  assert.equal(r.code, 0, show(r));
  fleet = await Fleet.start("brokercfg", [], {}, { brokerArgs: ["-c", conf] });
  for (const node of ["central", "ship1", "ship2"]) await fleet.add(node, { nkeySeedFile: seedFile(node) });
});
after(async () => {
  await fleet?.close();
  rmSync(out, { recursive: true, force: true });
});

/** A plain NATS client holding `node`'s broker credential, collecting what the broker refuses it. */
async function stolen(node: string): Promise<{ nc: NatsConnection; refused: string[] }> {
  const seed = new TextEncoder().encode(readFileSync(seedFile(node), "utf8").trim());
  const nc = await connect({ servers: fleet.broker.url, authenticator: nkeyAuthenticator(seed) });
  const refused: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error instanceof PermissionViolationError)
        refused.push(`${s.error.operation} ${s.error.subject}`);
    }
  })();
  return { nc, refused };
}

test("the configuration is valid for nats-server, private, and keeps seeds when run again", async () => {
  const bin = findNatsServer() as string;
  assert.match(execFileSync(bin, ["-c", conf, "-t"], { encoding: "utf8", stdio: "pipe" }) || "valid", /valid/);
  assert.equal(statSync(out).mode & 0o777, 0o700);
  for (const f of [conf, seedFile("central"), seedFile("ship1")]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
  const before = readFileSync(seedFile("ship1"), "utf8");
  const ship1Key = publicKey("ship1");
  assert.ok(ship1Key);
  const r = await runCli(["broker-config", "--out", out, "ship1", "ship2", "ship3"]);
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /4 nodes: central, ship1, ship2, ship3/);
  assert.equal(readFileSync(seedFile("ship1"), "utf8"), before, "ship1's seed is kept");
  assert.equal(publicKey("ship1"), ship1Key);
  assert.ok(publicKey("ship3"));
  const bad = await runCli(["broker-config", "--out", out, "_online"]);
  assert.equal(bad.code, 2, show(bad));
  assert.match(bad.stderr, /starts with "_"/);
});

test("through the least-privilege broker: messages, ACKs, replies, running notices and pongs flow", async () => {
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", "sleep 0.5; echo from-ship1"],
    replyMethod: "console",
    ACKTimeout: 5,
    retries: 2,
    methodTimeout: 10,
  });
  await fleet.waitState("central", id as string, "running");
  const done = await fleet.waitState("central", id as string);
  assert.equal(done.state, "done", JSON.stringify(done));
  assert.match(JSON.stringify(done), /from-ship1/);
  const [ping] = await fleet.sendOk("ship1", { toNode: "ship2", method: "ping", ACKTimeout: 5, retries: 2 });
  assert.equal((await fleet.waitState("ship1", ping as string)).state, "done");
});

test("a refusal reaches central's error log through the broker", async () => {
  // The default rules do not let ship1 run commands on ship2: ship2 refuses it and reports to central.
  const [id] = await fleet.sendOk("ship1", { toNode: "ship2", method: "cliCommand", methodArgs: ["true"] });
  const failed = await fleet.waitState("ship1", id as string);
  assert.equal(failed.state, "failed");
  assert.match(failed.reason ?? "", /not allowed: ship1 may not call cliCommand on ship2/);
  const file = join(fleet.node("central").dataFolder, "errorLog", "ship2", "errorLog.log");
  await sleepUntil(
    () => {
      try {
        return readFileSync(file, "utf8").includes(id as string);
      } catch {
        return false;
      }
    },
    { what: "ship2's report of the refusal in central's error log" },
  );
});

test("a stolen node credential cannot read other nodes' subjects or inboxes", async () => {
  const { nc } = await stolen("ship1");
  try {
    const denied: string[] = [];
    for (const subject of ["ship2.>", "central.>", "_INBOX.central.>", "_INBOX.>", ">", "*.cliCommand.*"]) {
      nc.subscribe(subject, {
        callback: (err) => {
          if (err instanceof PermissionViolationError) denied.push(subject);
        },
      });
    }
    // What ship1 may read: its own subjects and inbox, presence, central's bundle.
    const own = ["ship1.>", "_INBOX.ship1.x.>", "_online.*", "_bundle.central"];
    const ownDenied: string[] = [];
    for (const subject of own) {
      nc.subscribe(subject, {
        callback: (err) => {
          if (err) ownDenied.push(subject);
        },
      });
    }
    await nc.flush();
    await sleepUntil(() => denied.length === 6, { what: () => `six refused subscriptions (got ${denied.join(", ")})` });
    // A later message through ship1's own subject shows the broker has answered every subscription.
    const [id] = await fleet.sendOk("central", { toNode: "ship1", method: "ping" });
    await fleet.waitState("central", id as string, "done");
    assert.deepEqual(ownDenied, []);
  } finally {
    await nc.close();
  }
});

test("a stolen node credential cannot publish under another node's name", async () => {
  const { nc, refused } = await stolen("ship1");
  try {
    const forbidden = [
      methodSubject("ship2", "cliCommand", "central"),
      methodSubject("central", "errorLog", "ship2"),
      stateSubject("central", "ship2"),
      "_online.ship2",
      "_bundle.central",
      "ship2._bundle.central",
    ];
    for (const subject of forbidden) nc.publish(subject, "x");
    await nc.flush();
    await sleepUntil(() => refused.length === forbidden.length, {
      what: () => `the broker to refuse ${forbidden.length} publishes (got ${refused.join(", ")})`,
    });
    assert.deepEqual(refused.sort(), forbidden.map((s) => `publish ${s}`).sort());
    // Its own name is allowed by the broker (and then up to the receiver's signature check and rules).
    nc.publish(methodSubject("ship2", "ping", "ship1"), "x");
    nc.publish("_online.ship1", "x");
    await nc.flush();
    assert.equal(refused.length, forbidden.length);
  } finally {
    await nc.close();
  }
});

test("a node given another node's credential says so in its log", async () => {
  const ship4 = await fleet.add("ship4", { nkeySeedFile: seedFile("ship1") }, { trusted: false });
  await sleepUntil(
    () => /does not let this node .*nkeySeedFile .*ship1\.nk.*another node's credential/.test(logText(ship4)),
    {
      what: `ship4's log to explain the refused subjects (${ship4.logPath})`,
    },
  );
});

test("a node added later joins after the configuration is written again and reloaded", async () => {
  const r = await runCli(["broker-config", "--out", out, "ship1", "ship2", "ship3", "ship5"]);
  assert.equal(r.code, 0, show(r));
  fleet.broker.reload();
  await fleet.add("ship5", { nkeySeedFile: seedFile("ship5") });
  const [id] = await fleet.sendOk("central", { toNode: "ship5", method: "ping", ACKTimeout: 5, retries: 3 });
  assert.equal((await fleet.waitState("central", id as string)).state, "done");
  const [back] = await fleet.sendOk("ship5", { toNode: "ship1", method: "ping", ACKTimeout: 5, retries: 3 });
  assert.equal((await fleet.waitState("ship5", back as string)).state, "done");
});

test("no credential, no connection", async () => {
  await assert.rejects(connect({ servers: fleet.broker.url }), /Authorization Violation/i);
});
