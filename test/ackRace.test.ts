/**
 * An attacker with no key who answers a reply inbox before the genuine
 * receiver does: the outbox drops the forged ACK unread (it is unsigned), but
 * it must not lose the attempt to it — the genuine ACK comes a moment later,
 * on the same inbox. Found by the chaos `forge` scenario (chaos/scenarios/forge.ts),
 * where racing every ACK made the ships re-send nearly every reply until the attacker stopped.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { methodSubscription } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { readHeader } from "../src/security/frame.js";

let fleet: Fleet;
let attacker: NatsConnection;
let raced = 0;
let ship1Prom = 0;

/** A counter of ship1's pongs to central, from its metrics; 0 when not there yet. */
async function pongs(counter: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ship1Prom}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${counter}{method="pong",to_node="central"} `));
  return Number(line?.split(" ")[1] ?? 0);
}

before(async () => {
  fleet = await Fleet.start("ack-race", ["central"]);
  ship1Prom = await freePort();
  await fleet.add("ship1", { promHostAndPort: `127.0.0.1:${ship1Prom}` });
  attacker = await connect({ servers: fleet.broker.url, noEcho: true });
  // The attacker sees each pong as central does, and answers its inbox at once: central ACKs only once the
  // pong is on its disk.
  attacker.subscribe(methodSubscription("central", "pong"), {
    callback: (_err, msg) => {
      const body = readHeader(msg.data)?.body;
      const id = body ? (JSON.parse(Buffer.from(body).toString("utf8")) as { id?: string }).id : undefined;
      if (!msg.reply || !id) return;
      raced++;
      attacker.publish(msg.reply, new TextEncoder().encode(JSON.stringify({ ack: id })));
    },
  });
  await attacker.flush();
});
after(async () => {
  await attacker.close();
  await fleet.close();
});

test("a forged ACK that beats the genuine one costs no attempt: the reply is delivered at its first", async () => {
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "ping",
    replyACKTimeout: 1,
    replyRetries: 1,
  });
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done");
  assert.ok(raced >= 1, "the attacker answered the pong's inbox");
  // ship1 takes central's genuine ACK of its pong, and sent it once.
  let acked = 0;
  await sleepUntil(async () => (acked = await pongs("steward_messages_acked_total")) >= 1, {
    timeoutMs: 15_000,
    what: "ship1 to take central's ACK of its pong",
  }).catch(() => undefined);
  assert.equal(acked, 1, "central's genuine ACK of the pong was taken");
  assert.equal(await pongs("steward_messages_retried_total"), 0, "the pong was not re-sent");
});
