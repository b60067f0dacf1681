/**
 * The Inbox (src/delivery/inbox.ts) in this process, on a real nats-server and
 * a real store: what a sender sees. A plain NATS connection plays the sender.
 */
import Database from "better-sqlite3";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleepUntil } from "../src/harness/fleet.js";
import { RunsLog } from "../src/harness/runs.js";
import type { Envelope } from "../src/message/message.js";
import type { MethodName } from "../src/message/methods.js";
import { type DeliveryNode, envelope, startDeliveryNode } from "./helpers/delivery-helpers.js";

let ship1: DeliveryNode;
let runs: RunsLog;
before(async () => {
  ship1 = await startDeliveryNode("ship1", { cliCommand: ["central"], ping: "*" });
  runs = new RunsLog(ship1, "inbox");
});
after(() => ship1.close());

let next = 0;
const uid = () => `inbox-${process.pid}-${++next}`;

/** A command from central that appends its id to the runs log; its reply goes out once, unawaited. */
const command = (id: string) =>
  envelope({ id, fromNode: "central", toNode: "ship1", methodArgs: runs.args(), replyACKTimeout: 0 });

/** Read the store file through another connection, as another process would. */
function fromFile<T>(sql: string, ...params: unknown[]): T | undefined {
  const db = new Database(ship1.store.path, { readonly: true });
  try {
    return db.prepare(sql).get(...params) as T | undefined;
  } finally {
    db.close();
  }
}

describe("inbox", () => {
  test("ACKs a message with its id only once it is stored: the store file holds it when the ACK arrives", async () => {
    const id = uid();
    const ack = await ship1.send("cliCommand", command(id));
    assert.deepEqual(ack, { ack: id });
    const row = fromFile<{ id: string }>("SELECT id FROM inbox WHERE from_node = 'central' AND id = ?", id);
    assert.equal(row?.id, id, "the ACKed message is committed in the store file");
  });

  test("a message sent again with the same id is ACKed again and runs once, with one reply", async () => {
    const id = uid();
    const message = command(id);
    // Twice at once (the second while the first is on its way to disk), then once more after it ran.
    const acks = await Promise.all([
      ship1.send("cliCommand", message),
      ship1.send("cliCommand", { ...message, attempt: 2 }),
    ]);
    assert.deepEqual(acks, [{ ack: id }, { ack: id }]);
    await sleepUntil(() => ship1.store.incoming.get("central", id)?.state === "done", { what: `${id} to be done` });
    assert.deepEqual(await ship1.send("cliCommand", { ...message, attempt: 3 }), { ack: id });
    assert.equal(runs.count(id), 1, "runs of the message");
    assert.equal(ship1.store.incoming.get("central", id)?.runs, 1);
    const replies = fromFile<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE request_id = ?", id);
    assert.equal(replies?.n, 1, "replies stored");
  });

  test("refuses, without storing or running it, a message for another node, on the wrong subject, or not allowed", async () => {
    const cases: {
      method: MethodName;
      message: Partial<Envelope> & Pick<Envelope, "id" | "fromNode">;
      reason: RegExp;
    }[] = [
      {
        method: "cliCommand",
        message: { ...command(uid()), toNode: "ship2" },
        reason: /for ship2 arrived at ship1/,
      },
      {
        method: "cliCommand",
        message: { ...command(uid()), method: "ping" },
        reason: /method ping sent on the subject of cliCommand/,
      },
      {
        method: "cliCommand",
        message: { ...command(uid()), fromNode: "ship9" },
        reason: /ship9 is not allowed to use cliCommand on ship1 \(allowedNodes\)/,
      },
      {
        method: "ping",
        message: { ...command(uid()), method: "ping", requestId: "never-sent" },
        reason: /answers no ping request of ship1 \(never-sent\)/,
      },
      { method: "cliCommand", message: { id: uid(), fromNode: "central" }, reason: /bad message: field toNode/ },
    ];
    for (const { method, message, reason } of cases) {
      const ack = await ship1.send(method, message);
      assert.ok("refused" in ack && reason.test(ack.refused), `${JSON.stringify(message)}: ${JSON.stringify(ack)}`);
      assert.equal(ack.id, message.id, "the refusal names the message");
      assert.equal(
        ship1.store.incoming.get(message.fromNode, message.id),
        undefined,
        "a refused message is not stored",
      );
      assert.ok(
        ship1.reported.some((r) => reason.test(r)),
        "the refusal is reported to central's error log",
      );
    }
    assert.equal(runs.count(cases[2]?.message.id as string), 0);
  });

  test("a message it cannot store is not ACKed, so that its sender sends it again", async () => {
    const ship2 = await startDeliveryNode("ship2", { cliCommand: "*" });
    try {
      ship2.store.close(); // every write now fails, as on a broken disk
      const id = uid();
      await assert.rejects(
        ship2.send("cliCommand", { ...command(id), toNode: "ship2" }, 1000),
        /timeout/i,
        "no ACK for a message that is not stored",
      );
      assert.equal(runs.count(id), 0);
    } finally {
      await ship2.close();
    }
  });
});
