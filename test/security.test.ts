/**
 * The broker link (README, "Securing the broker link"): an nkey seed file, a NATS user credentials file, and
 * TLS with a root CA and a client certificate, each against a real
 * nats-server configured to require it. Keys, JWTs and certificates are made
 * fresh here. A node with wrong or missing credentials does not connect, says
 * why in one line (no flood, no stack trace), keeps retrying, and delivers
 * what it accepted meanwhile once it is given the right credentials.
 *
 * All brokers and nodes start at once in `before`: the TLS refusal shows only
 * after nats.js's 20 s connect timeout, and waits overlap that way.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { health } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import type { NodeProcess } from "../src/harness/nodeProcess.js";
import { logLines, makeOperator, makePki, makeUserNkey, type Pki, tlsServerConf } from "./helpers/security-helpers.js";

const keys = mkdtempSync(join(tmpdir(), "steward-test-keys-"));
let nk: Fleet;
let jwt: Fleet;
let tls: Fleet;
let pki: Pki;
const seeds: Record<string, { seedFile: string; publicKey: string }> = {};

before(async () => {
  for (const n of ["central", "ship1", "ship2", "wrong"]) seeds[n] = makeUserNkey(keys, n);
  const allowed = ["central", "ship1", "ship2"].map((n) => `{ nkey: ${seeds[n]?.publicKey} }`).join(", ");
  writeFileSync(join(keys, "nkey.conf"), `authorization { users = [ ${allowed} ] }\n`);

  const op = makeOperator(keys);
  writeFileSync(join(keys, "operator.conf"), op.serverConf);
  const creds = { central: op.creds("central"), ship1: op.creds("ship1"), foreign: op.foreignCreds("foreign") };
  const broken = join(keys, "broken.creds");
  writeFileSync(broken, "this is not a creds file\n");

  pki = makePki(keys);
  writeFileSync(join(keys, "tls.conf"), tlsServerConf(pki));
  const client = { rootCAPath: pki.caFile, tlsCertFile: pki.clientCert, tlsKeyFile: pki.clientKey };

  [nk, jwt, tls] = await Promise.all([
    Fleet.start("nkey", [], {}, { brokerArgs: ["-c", join(keys, "nkey.conf")] }),
    Fleet.start("creds", [], {}, { brokerArgs: ["-c", join(keys, "operator.conf")] }),
    Fleet.start("tls", [], {}, { brokerArgs: ["-c", join(keys, "tls.conf")] }),
  ]);
  const tlsUrl = `tls://127.0.0.1:${tls.broker.port}`;
  const down = { connected: false };
  await Promise.all([
    nk.add("central", { nkeySeedFile: seeds.central?.seedFile ?? "" }),
    nk.add("ship1", { nkeySeedFile: seeds.ship1?.seedFile ?? "" }),
    nk.add("ship2", { nkeySeedFile: seeds.wrong?.seedFile ?? "" }, down),
    nk.add("ship3", {}, down),
    nk.add("ship4", { nkeySeedFile: join(keys, "missing.nk") }, down),
    jwt.add("central", { natsCredsFile: creds.central }),
    jwt.add("ship1", { natsCredsFile: creds.ship1 }),
    jwt.add("ship2", { natsCredsFile: creds.foreign }, down),
    jwt.add("ship3", { natsCredsFile: broken }, down),
    tls.add("central", { ...client, brokerAddress: tlsUrl }),
    tls.add("ship1", { ...client, brokerAddress: tls.broker.url }),
    tls.add("ship2", { rootCAPath: pki.caFile, brokerAddress: tlsUrl }, down),
    tls.add("ship3", { tlsCertFile: pki.clientCert, tlsKeyFile: pki.clientKey, brokerAddress: tlsUrl }, down),
  ]);
});

after(async () => {
  await Promise.allSettled([nk, jwt, tls].map((f) => f?.close()));
  if (!process.env.KEEP_TEST_DIRS) rmSync(keys, { recursive: true, force: true });
});

/** central runs `echo` on ship1 and the result comes back: the link works both ways. */
async function roundTrip(fleet: Fleet): Promise<void> {
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["echo", "secured"],
  });
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.data, "secured\n");
}

/**
 * The node stays off the broker and its log says why in one line: the line
 * appears, and over the next ~5 s of retries (one a second) it is not
 * repeated; nothing in the log is a stack trace.
 */
async function refusedOnce(node: NodeProcess, reason: RegExp, timeoutMs = 10_000): Promise<string> {
  await sleepUntil(() => logLines(node.logPath, reason).matching.length > 0, {
    timeoutMs,
    what: () =>
      `${node.opts.nodeName} to log ${reason}; log:\n${logLines(node.logPath, /./).all.slice(-10).join("\n")}`,
  });
  await new Promise((r) => setTimeout(r, 5_000));
  const { matching, stack, all } = logLines(node.logPath, reason);
  assert.ok(matching.length <= 2, `a flood of ${matching.length} lines:\n${matching.join("\n")}`);
  assert.deepEqual(stack, [], `stack trace in the log:\n${all.join("\n")}`);
  assert.ok(all.length < 20, `the log grows while retrying (${all.length} lines):\n${all.join("\n")}`);
  const h = await health(node.socketPath);
  assert.ok(h.broker === "connecting" || h.broker === "down", `broker link is ${h.broker}`);
  return matching[0] as string;
}

test("nkey: nodes with listed seeds exchange a cliCommand", async () => {
  await roundTrip(nk);
});

test("nkey: a wrong seed is refused in one line; what it accepted meanwhile goes out once the right seed is set", async () => {
  const ship2 = nk.node("ship2");
  // Accepted while the node cannot connect: one from ship2 (a ping: what any admitted node may send), one for ship2.
  const [fromShip2] = await nk.sendOk("ship2", { toNode: "central", method: "ping" });
  const [toShip2] = await nk.sendOk("central", {
    toNode: "ship2",
    method: "cliCommand",
    methodArgs: ["echo", "to ship2"],
    ACKTimeout: 5,
    retries: 20,
  });
  const line = await refusedOnce(ship2, /broker refused the credentials from nkeySeedFile/);
  assert.match(line, /Authorization Violation/);
  assert.ok(line.includes(seeds.wrong?.seedFile ?? "?"), line);
  assert.ok(line.includes(seeds.wrong?.publicKey ?? "?"), `names the seed's public key: ${line}`);
  assert.equal((await nk.status("ship2", fromShip2 as string)).state, "queued");

  await ship2.close();
  (ship2.opts.settings as Record<string, string | number>).nkeySeedFile = seeds.ship2?.seedFile ?? "";
  await ship2.start();
  const a = await nk.waitState("ship2", fromShip2 as string);
  assert.equal(a.state, "done", JSON.stringify(a));
  const b = await nk.waitState("central", toShip2 as string);
  assert.equal(b.state, "done", JSON.stringify(b));
  assert.equal(b.result?.data, "to ship2\n");
});

test("nkey: no seed, or a seed file that is not there, is one clear line each", async () => {
  const [none, missing] = await Promise.all([
    refusedOnce(nk.node("ship3"), /broker requires credentials/),
    refusedOnce(nk.node("ship4"), /cannot read nkeySeedFile/),
  ]);
  assert.match(none, /Authorization Violation.*set nkeySeedFile or natsCredsFile/);
  assert.ok(missing.includes(join(keys, "missing.nk")), missing);
  assert.match(missing, /no such file/);
});

test("creds: nodes with user credentials signed by the broker's account exchange a cliCommand", async () => {
  await roundTrip(jwt);
});

test("creds: credentials from an account the broker does not trust, or a broken file, are one clear line", async () => {
  const [foreign, broken] = await Promise.all([
    refusedOnce(jwt.node("ship2"), /broker refused the credentials from natsCredsFile/),
    refusedOnce(jwt.node("ship3"), /natsCredsFile \S+broken.creds is not a NATS credentials file/),
  ]);
  assert.match(foreign, /Authorization Violation/);
  assert.ok(foreign.includes("foreign.creds"), foreign);
  assert.doesNotMatch(broken, /Authorization/);
});

test("tls: nodes with the root CA and a client certificate exchange a cliCommand (tls:// and nats:// addresses)", async () => {
  await roundTrip(tls);
});

test("tls: a node without a client certificate, or without the root CA, is refused in one clear line", async () => {
  // nats.js waits out its 20 s connect timeout before it gives up on a TLS 1.3 refusal.
  const [noCert, noCa] = await Promise.all([
    refusedOnce(tls.node("ship2"), /broker refused the TLS connection/, 35_000),
    refusedOnce(tls.node("ship3"), /the broker's TLS certificate is not trusted/),
  ]);
  // Go's TLS stack answers a missing client certificate with a "bad certificate" alert.
  assert.match(noCert, /alert .*certificate.*set tlsCertFile and tlsKeyFile/);
  assert.match(noCa, /check rootCAPath/);
});
