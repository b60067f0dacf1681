/**
 * The Outbox (src/delivery/outbox.ts) in this process, on a real nats-server
 * and a real store: what an operator sees of a message's state. A plain NATS
 * connection plays the receiver and ACKs, refuses or stays silent.
 */
import type { Msg } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { methodSubscription } from "../src/delivery/subjects.js";
import { sleepUntil } from "../src/harness/fleet.js";
import type { Envelope } from "../src/message/message.js";
import { type DeliveryNode, envelope, startDeliveryNode } from "./helpers/delivery-helpers.js";

let central: DeliveryNode;
before(async () => {
  central = await startDeliveryNode("central", { none: "*" });
});
after(() => central.close());

let next = 0;
const uid = () => `outbox-${process.pid}-${++next}`;

/**
 * Play ship1 for the messages with `id`: every attempt that arrives is handed to `onAttempt`,
 * which may answer it. Returns the attempts seen so far and the way to stop.
 */
async function receiver(id: string, onAttempt: (msg: Msg, message: Envelope) => void) {
  const attempts: number[] = [];
  const sub = central.peer.subscribe(methodSubscription("ship1", "cliCommand"), {
    callback: (_err, msg) => {
      const message = central.body(msg.data) as Envelope;
      if (message.id !== id) return;
      attempts.push(message.attempt);
      onAttempt(msg, message);
    },
  });
  await central.peer.flush();
  return { attempts, stop: () => sub.unsubscribe() };
}

/** Store a message for ship1 and start delivering it, as the node does with what an input accepted. */
function deliver(fields: Partial<Envelope> & { id: string }): Envelope {
  const message = envelope({ fromNode: "central", toNode: "ship1", ...fields });
  assert.equal(central.store.outgoing.add(message), true);
  central.outbox.deliver({ envelope: message, attempt: 0 });
  return message;
}

const state = (id: string) => central.store.outgoing.get(id);

async function waitState(id: string, wanted: string) {
  await sleepUntil(() => state(id)?.state === wanted, {
    what: () => `${id} to be ${wanted} (last: ${JSON.stringify(state(id))})`,
  });
  return state(id);
}

describe("outbox", () => {
  test("no ACK: sent 1 + retries times, then failed: max retries reached, reported", async () => {
    const id = uid();
    const ship1 = await receiver(id, () => undefined);
    try {
      deliver({ id, ACKTimeout: 1, retries: 2 });
      const rec = await waitState(id, "failed");
      assert.match(rec?.reason ?? "", /^max retries reached \(3 attempts, last: .*timeout/i);
      assert.equal(rec?.attempt, 3);
      assert.deepEqual(ship1.attempts, [1, 2, 3]);
      assert.ok(central.reported.some((r) => r.startsWith("max retries reached (3 attempts")));
    } finally {
      ship1.stop();
    }
  });

  test("an ACK moves it to acked; a refusal fails it at once, without re-sending", async () => {
    const acked = uid();
    const refused = uid();
    const ship1 = await receiver(acked, (msg, message) =>
      msg.respond(central.seal(msg.reply as string, { ack: message.id }, "ship1")),
    );
    const ship1b = await receiver(refused, (msg, message) =>
      msg.respond(
        central.seal(msg.reply as string, { refused: "path outside the data folder", id: message.id }, "ship1"),
      ),
    );
    try {
      deliver({ id: acked, retries: 3 });
      deliver({ id: refused, retries: 3 });
      assert.equal((await waitState(acked, "acked"))?.attempt, 1);
      assert.equal((await waitState(refused, "failed"))?.reason, "refused by ship1: path outside the data folder");
      assert.deepEqual(ship1b.attempts, [1]);
    } finally {
      ship1.stop();
      ship1b.stop();
    }
  });

  test("a late ACK never moves a message back: the reply came first, it stays done", async () => {
    const id = uid();
    let held: Msg | undefined;
    const ship1 = await receiver(id, (msg) => (held = held ?? msg));
    try {
      deliver({ id, ACKTimeout: 10, retries: 0 });
      await sleepUntil(() => held !== undefined, { what: "the message to reach ship1" });
      // ship1 ran it and its reply overtook the ACK.
      const reply = envelope({
        id: `${id}-reply`,
        fromNode: "ship1",
        toNode: "central",
        method: "none",
        requestId: id,
        result: { exitCode: 0 },
        data: "ran",
      });
      assert.deepEqual(await central.send("none", reply), { ack: reply.id });
      const done = await waitState(id, "done");
      assert.equal(done?.result?.data, "ran");
      held?.respond(central.seal(held.reply as string, { ack: id }, "ship1"));
      await sleepUntil(() => central.outbox.inFlight === 0, { what: "the delivery task to take the ACK and end" });
      assert.equal(state(id)?.state, "done");
      assert.equal(state(id)?.updatedAt, done?.updatedAt, "the late ACK wrote nothing");
    } finally {
      ship1.stop();
    }
  });

  test("a reply whose ACK wait ends after close() began does not hold the close for its parked wait", async () => {
    // A node of its own: this test closes its outbox.
    const node = await startDeliveryNode("ship2", { none: "*" });
    try {
      // A reply (retries spent after one attempt, then parked REPLY_PARKED_MS) to a node that stays silent.
      const reply = envelope({
        id: uid(),
        fromNode: "ship2",
        toNode: "ship1",
        method: "none",
        requestId: "some-request",
        ACKTimeout: 1,
        retries: 0,
      });
      let seen = false;
      const sub = node.peer.subscribe(methodSubscription("ship1", "none"), {
        callback: () => {
          seen = true;
        },
      });
      await node.peer.flush();
      assert.equal(node.store.outgoing.add(reply), true);
      node.outbox.deliver({ envelope: reply, attempt: 0 });
      await sleepUntil(() => seen, { what: "the reply's first attempt, its ACK wait begun" });
      sub.unsubscribe();
      // Closing now (a graceful stop): the ACK wait ends without an ACK, and the task must end, not park.
      const closed = node.outbox.close().then(() => "closed");
      const parked = new Promise((resolve) => setTimeout(() => resolve("still parked"), 15_000).unref());
      assert.equal(await Promise.race([closed, parked]), "closed");
    } finally {
      await node.close();
    }
  });
});
