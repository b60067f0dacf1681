/**
 * Relay (docs/DELIVERY.md, "Relay"): two brokers, A and B. Central and the relay node are on A; the relay
 * node also joins B (relayBrokerAddress), where "far" is — far is NOT on A, so central reaches it only
 * through the relay. Far was provisioned by hand (central's key and bundle copied into its config folder),
 * as a node that cannot say hello to central must be.
 */
import { connect } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { health, query } from "../src/client/client.js";
import type { RelayHop } from "../src/delivery/relay.js";
import { methodSubject, relaySubject } from "../src/delivery/subjects.js";
import { Fleet, frameBody, sleepUntil } from "../src/harness/fleet.js";
import { LocalNatsServer } from "../src/harness/natsServer.js";
import { freePort } from "../src/harness/net.js";
import type { NodeProcess } from "../src/harness/nodeProcess.js";
import { newId } from "../src/message/id.js";
import { startSubKey } from "../src/node/config.js";
import { loadOrCreateIdentity } from "../src/security/identity.js";
import { Metrics } from "./helpers/attack-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

let fleet: Fleet;
let brokerB: LocalNatsServer;
let far: NodeProcess;
let farMetrics: Metrics;

/** Both brokers take small payloads, so that a reply larger than one hop is quick to make. */
const MAX_PAYLOAD = 64 * 1024;

/** A cliCommand from central to far through the relay node; `extra` overrides. */
function relayed(marker: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    toNode: "far",
    relayViaNode: "relay",
    method: "cliCommand",
    methodArgs: ["sh", "-c", `touch ${marker} && echo ran-on-far`],
    replyMethod: "none",
    ACKTimeout: 3,
    retries: 20,
    ...extra,
  };
}

/** A broker configuration file with MAX_PAYLOAD. */
function brokerConf(name: string): string {
  const dir = join(tmpdir(), `steward-${name}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, "nats.conf");
  writeFileSync(conf, `max_payload: ${MAX_PAYLOAD}\n`);
  return conf;
}

before(async () => {
  fleet = await Fleet.start("relay", ["central"], {}, { brokerArgs: ["-c", brokerConf("relay-brokerA")] });
  brokerB = await LocalNatsServer.start({
    dir: join(fleet.dir, "brokerB"),
    args: ["-c", brokerConf("relay-brokerB")],
  });
  await fleet.add("relay", { relayBrokerAddress: brokerB.url });
  // Far's key, admitted at central before far ever starts: it cannot say hello to central.
  const farEtc = join(fleet.dir, "far", "etc");
  mkdirSync(farEtc, { recursive: true });
  const { identity } = loadOrCreateIdentity(farEtc, "far");
  await query(fleet.node("central").socketPath, "approve", { node: "far", publicKey: identity.publicKey });
  await fleet.trusted(["far"]);
  // Central's key and bundle, as the relay holds them, handed to far by hand.
  for (const file of ["central.pub", "bundle"])
    copyFileSync(join(fleet.node("relay").configFolder, file), join(farEtc, file));
  const port = await freePort();
  far = await fleet.add(
    "far",
    {
      brokerAddress: brokerB.url,
      promHostAndPort: `127.0.0.1:${port}`,
      // Far's own rule: nobody may stream commands here.
      [startSubKey("cliCommandCont")]: "",
    },
    { trusted: false },
  );
  farMetrics = new Metrics(port);
});

after(async () => {
  await fleet?.close();
  await brokerB?.stop().catch(() => undefined);
});

describe("relay", () => {
  test("central runs a command on far through the relay; the result comes back the same way", async () => {
    const marker = join(far.dataFolder, "ran-1");
    const [id] = await fleet.sendOk(
      "central",
      relayed(marker, { methodArgs: ["sh", "-c", `sleep 2 && touch ${marker} && echo ran-on-far`] }),
    );
    // Far's notice that it runs comes through the relay too.
    await fleet.waitState("central", id as string, "running");
    const view = await fleet.waitState("central", id as string);
    assert.equal(view.state, "done", JSON.stringify(view));
    assert.equal(view.exitCode, 0);
    assert.match(view.result?.data ?? "", /ran-on-far/);
    assert.ok(existsSync(marker));
    // The relay's hop: its own copy, delivered to far.
    const hop = await fleet.waitState("relay", id as string, "done");
    assert.equal(hop.toNode, "far");
  });

  test("the origin's states show both hops: the relay has it while far is away, then far runs it", async () => {
    await far.stop();
    const marker = join(far.dataFolder, "ran-2");
    const [id] = await fleet.sendOk("central", relayed(marker));
    const acked = await fleet.waitState("central", id as string, "acked");
    assert.match(acked.reason ?? "", /relayed by relay: relay has it, to deliver to far/);
    const hop = await fleet.status("relay", id as string);
    assert.ok(["queued", "sent"].includes(hop.state), JSON.stringify(hop));
    await far.start();
    const view = await fleet.waitState("central", id as string);
    assert.equal(view.state, "done", JSON.stringify(view));
    assert.ok(existsSync(marker));
    assert.equal((await fleet.waitState("relay", id as string)).state, "done");
  });

  test("far's own rules refuse what central may not do there; the refusal comes back through the relay", async () => {
    const [id] = await fleet.sendOk("central", relayed(join(far.dataFolder, "never"), { method: "cliCommandCont" }));
    const view = await fleet.waitState("central", id as string);
    assert.equal(view.state, "failed", JSON.stringify(view));
    assert.match(view.reason ?? "", /relayed by relay.*central is not allowed to use cliCommandCont on far/);
    assert.ok(!existsSync(join(far.dataFolder, "never")));
  });

  test("a message the origin did not ask the relay to carry is refused by the relay", async () => {
    // Central names no relay: the relay node must not carry what central sent for far directly.
    const central = fleet.as("central");
    const inner = envelope({ id: newId(), fromNode: "central", toNode: "far", methodArgs: ["true"] });
    const innerSubject = methodSubject("far", "cliCommand", "central");
    const frame = Buffer.from(central.seal(innerSubject, inner)).toString("base64");
    const nc = await connect({ servers: fleet.broker.url });
    try {
      const subject = relaySubject("relay", "central");
      const hop: RelayHop = { id: inner.id, fromNode: "central", toNode: "relay", subject: innerSubject, frame };
      const answer = await nc.request(subject, central.seal(subject, hop), { timeout: 5000 });
      const body = frameBody(answer.data) as { refused?: string };
      assert.match(body.refused ?? "", /central did not ask relay to relay this message/);
    } finally {
      await nc.close();
    }
  });

  test("an inner message changed on the way (by the relay or anyone on broker B) is dropped by far", async () => {
    const central = fleet.as("central");
    const relayPeer = fleet.as("relay");
    const marker = join(far.dataFolder, "tampered");
    const innerSubject = methodSubject("far", "cliCommand", "central");
    const hopFor = (bytes: Uint8Array, id: string) => {
      const subject = relaySubject("far", "relay");
      const hop: RelayHop = {
        id,
        fromNode: "relay",
        toNode: "far",
        subject: innerSubject,
        frame: Buffer.from(bytes).toString("base64"),
      };
      return { subject, bytes: relayPeer.seal(subject, hop) };
    };
    const harmless = envelope({
      id: newId(),
      fromNode: "central",
      toNode: "far",
      relayViaNode: "relay",
      methodArgs: ["sh", "-c", "true"],
    });
    const signed = central.seal(innerSubject, harmless);
    // The relay (its own key: it signs the hop) swaps the command in central's signed frame.
    const changed = Buffer.from(
      Buffer.from(signed).toString("latin1").replace(`"sh","-c","true"`, `"sh","-c","touch ${marker}"`),
      "latin1",
    );
    const nc = await connect({ servers: brokerB.url });
    try {
      await farMetrics.dropsDuring({ "bad signature": 1 }, async () => {
        const { subject, bytes } = hopFor(changed, harmless.id);
        nc.publish(subject, bytes);
        await nc.flush();
      });
      // The same path with central's frame as signed goes through: far has handled the changed one and dropped it.
      const { subject, bytes } = hopFor(signed, harmless.id);
      const answer = await nc.request(subject, bytes, { timeout: 5000 });
      assert.deepEqual(frameBody(answer.data), { ack: harmless.id });
    } finally {
      await nc.close();
    }
    assert.ok(!existsSync(marker));
  });

  test("a relay killed after it ACKed the origin, before far had it, delivers it after its restart", async () => {
    // Killed, not stopped: the reply of the run the test above left there must not hold a graceful stop.
    await far.kill();
    const marker = join(far.dataFolder, "after-crash");
    const [id] = await fleet.sendOk("central", relayed(marker));
    await fleet.waitState("central", id as string, "acked");
    await fleet.node("relay").kill();
    await far.start();
    await fleet.node("relay").start();
    const view = await fleet.waitState("central", id as string, undefined, 40_000);
    assert.equal(view.state, "done", JSON.stringify(view));
    assert.ok(existsSync(marker));
    await sleepUntil(async () => (await fleet.status("relay", id as string)).state === "done", {
      what: "the relay's copy to be done",
    });
  });

  test("a relayed command's output larger than max_payload comes back cut to one hop, marked truncated", async () => {
    const [id] = await fleet.sendOk(
      "central",
      relayed("", { methodArgs: ["sh", "-c", `head -c ${3 * MAX_PAYLOAD} /dev/zero | tr '\\0' a`] }),
    );
    const view = await fleet.waitState("central", id as string, undefined, 30_000);
    assert.equal(view.state, "done", JSON.stringify({ ...view, result: undefined }));
    const data = view.result?.data ?? "";
    assert.match(data, /^a+$/);
    assert.ok(data.length < MAX_PAYLOAD, `${data.length} bytes came back`);
    assert.equal(data.length + (view.result?.truncated ?? 0), 3 * MAX_PAYLOAD);
  });

  test("a message sent fire and forget (ACKTimeout 0) is done on the relay once far ACKs it", async () => {
    const marker = join(far.dataFolder, "fire-and-forget");
    const [id] = await fleet.sendOk("central", relayed(marker, { ACKTimeout: 0 }));
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
    assert.ok(existsSync(marker));
    // Its copy waited for far's ACK: done, not left "sent" to go again at the relay's next start.
    const hop = await fleet.waitState("relay", id as string);
    assert.equal(hop.state, "done", JSON.stringify(hop));
  });

  test("another origin's hop under an id the relay holds is refused; a reply to the relay's copy is refused", async () => {
    const [id] = await fleet.sendOk("central", relayed(join(far.dataFolder, "ran-held")));
    await fleet.waitState("central", id as string);
    await fleet.waitState("relay", id as string);
    const farPeer = fleet.as("far");
    const nc = await connect({ servers: brokerB.url });
    try {
      // Far (which central's rules let ping central) sends a message of its own under central's id.
      const inner = envelope({
        id: id as string,
        fromNode: "far",
        toNode: "central",
        method: "ping",
        relayViaNode: "relay",
      });
      const innerSubject = methodSubject("central", "ping", "far");
      const frame = Buffer.from(farPeer.seal(innerSubject, inner)).toString("base64");
      const subject = relaySubject("relay", "far");
      const hop: RelayHop = { id: inner.id, fromNode: "far", toNode: "relay", subject: innerSubject, frame };
      const answer = await nc.request(subject, farPeer.seal(subject, hop), { timeout: 5000 });
      assert.match((frameBody(answer.data) as { refused?: string }).refused ?? "", /already used here/);
      // Far answers the relay's copy straight to the relay: the relay sent no such request of its own.
      const reply = envelope({
        id: newId(),
        fromNode: "far",
        toNode: "relay",
        method: "none",
        requestId: id,
        result: { exitCode: 0 },
      });
      const replySubject = methodSubject("relay", "none", "far");
      const refused = await nc.request(replySubject, farPeer.seal(replySubject, reply), { timeout: 5000 });
      assert.match((frameBody(refused.data) as { refused?: string }).refused ?? "", /answers no none request of relay/);
    } finally {
      await nc.close();
    }
  });

  test("the relay applies maxMessagesPerSender to the hops it stores: busy, then carried all the same", async () => {
    const relay = fleet.node("relay");
    await relay.stop();
    Object.assign(relay.opts.settings ?? {}, { maxMessagesPerSender: 1, maxMessagesPerSenderBurst: 1 });
    await relay.start();
    await sleepUntil(async () => (await health(relay.socketPath)).broker === "up", { what: "the relay on the broker" });
    const central = fleet.as("central");
    const nc = await connect({ servers: fleet.broker.url });
    const answers: unknown[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const inner = envelope({
          id: newId(),
          fromNode: "central",
          toNode: "far",
          relayViaNode: "relay",
          methodArgs: ["true"],
        });
        const innerSubject = methodSubject("far", "cliCommand", "central");
        const frame = Buffer.from(central.seal(innerSubject, inner)).toString("base64");
        const subject = relaySubject("relay", "central");
        const hop: RelayHop = { id: inner.id, fromNode: "central", toNode: "relay", subject: innerSubject, frame };
        const answer = await nc.request(subject, central.seal(subject, hop), { timeout: 5000 });
        answers.push({ id: inner.id, body: frameBody(answer.data) });
      }
    } finally {
      await nc.close();
    }
    const busy = answers.filter((a) => {
      const { id, body } = a as { id: string; body: { busy?: number; id?: string } };
      return typeof body.busy === "number" && body.busy > 0 && body.id === id;
    });
    assert.ok(busy.length >= 1, JSON.stringify(answers));
    // Central's own outbox waits as told and sends again: nothing is lost.
    const ids = await fleet.sendOk(
      "central",
      [1, 2, 3].map((n) => relayed(join(far.dataFolder, `limited-${n}`))),
    );
    for (const id of ids) assert.equal((await fleet.waitState("central", id, undefined, 30_000)).state, "done");
    for (const n of [1, 2, 3]) assert.ok(existsSync(join(far.dataFolder, `limited-${n}`)));
  });
});
