/**
 * Retention (src/store/retention.ts): finished messages leave both nodes'
 * stores `retention` after they ended, unfinished ones never do, a received
 * id stays a duplicate until its deliverBy, keys never approved go after a
 * day, and the file gives freed pages back. Real node processes on a real
 * broker, with retention=2 and pruneInterval=1; the store-level cases use
 * real SQLite files. The stores are read from the test with a second SQLite
 * connection, as an operator's `sqlite3` would.
 */
import Database from "better-sqlite3";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { listMessages } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import type { NodeProcess } from "../src/harness/nodeProcess.js";
import { newId } from "../src/message/id.js";
import { MIGRATIONS, SCHEMA_VERSION } from "../src/store/migrations.js";
import { PENDING_KEY_MS } from "../src/store/retention.js";
import { Store } from "../src/store/store.js";
import { Attacker, frameBody, Metrics, nodeIdentity, openAnswer } from "./helpers/attack-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

/** Rows of `sql` in a node's store, read through a connection of the test's own. */
function rows(node: NodeProcess, sql: string, ...params: unknown[]): unknown[] {
  const db = new Database(join(node.opts.dir, "var", `${node.opts.nodeName}.sqlite`), { readonly: true });
  try {
    return db.prepare(sql).all(...params);
  } finally {
    db.close();
  }
}

/** Every row a message left on its origin and its receiver: the request, its reply, both inbox copies. */
function traces(origin: NodeProcess, receiver: NodeProcess, id: string): Record<string, number> {
  const count = (node: NodeProcess, sql: string) => rows(node, sql, { id }).length;
  return {
    "origin outbox": count(origin, `SELECT 1 FROM outbox WHERE id = @id OR request_id = @id`),
    "origin outbox envelope": count(origin, `SELECT 1 FROM outbox_envelopes WHERE id = @id`),
    // The reply's envelope; its inbox row goes with it (a trigger deletes the envelope when the row goes).
    "origin inbox (the reply)": count(
      origin,
      `SELECT 1 FROM inbox_envelopes WHERE json_extract(envelope, '$.requestId') = @id`,
    ),
    "receiver inbox": count(receiver, `SELECT 1 FROM inbox WHERE id = @id`),
    "receiver inbox envelope": count(receiver, `SELECT 1 FROM inbox_envelopes WHERE id = @id`),
    "receiver outbox (the reply)": count(receiver, `SELECT 1 FROM outbox WHERE request_id = @id`),
    "receiver outbox envelope (the reply)": count(
      receiver,
      `SELECT 1 FROM outbox_envelopes WHERE json_extract(envelope, '$.requestId') = @id`,
    ),
  };
}

const none = {
  "origin outbox": 0,
  "origin inbox (the reply)": 0,
  "receiver inbox": 0,
  "receiver outbox (the reply)": 0,
};

describe("retention between node processes", () => {
  let fleet: Fleet;
  let attacker: Attacker;
  let prom: Metrics;
  let markers: string;
  const settings = { retention: 2, pruneInterval: 1 };

  before(async () => {
    const port = await freePort();
    fleet = await Fleet.start("retention");
    markers = join(fleet.dir, "markers");
    mkdirSync(markers);
    attacker = await Attacker.connect(fleet.broker.url);
    await fleet.add("central", { ...settings, promHostAndPort: `127.0.0.1:${port}` });
    await fleet.add("ship1", settings);
    prom = new Metrics(port);
  });

  after(async () => {
    await attacker?.close();
    await fleet?.close();
  });

  /** Central runs `args` on ship1 and it ends done; its id. */
  async function run(args: string[]): Promise<string> {
    const [id] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: args });
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
    return id as string;
  }

  /** Wait until every row `id` left on both nodes is pruned. */
  async function waitPruned(id: string): Promise<void> {
    const [central, ship1] = [fleet.node("central"), fleet.node("ship1")];
    let left: Record<string, number> = {};
    await sleepUntil(
      () => {
        left = traces(central, ship1, id);
        return Object.values(left).every((n) => n === 0);
      },
      { what: () => `message ${id} to be pruned (rows left: ${JSON.stringify(left)})` },
    );
  }

  test("a finished message leaves both nodes' stores and steward status after retention", async () => {
    const [central, ship1] = [fleet.node("central"), fleet.node("ship1")];
    const id = await run(["echo", "hello"]);
    assert.notDeepEqual(traces(central, ship1, id), none, "stored while recent");
    assert.ok((await listMessages(central.socketPath, 50)).some((m) => m.id === id));

    await waitPruned(id);
    await assert.rejects(fleet.status("central", id), /no message with id/);
    assert.ok(!(await listMessages(central.socketPath, 50)).some((m) => m.id === id));
    assert.ok((await prom.value(`steward_store_pruned_total{table="outbox"}`)) >= 1);
    // steward nodes counts what is stored: nothing left for ship1.
    const counts = rows(central, `SELECT SUM(n) AS n FROM outbox_counts WHERE to_node = 'ship1'`) as { n: number }[];
    assert.equal(counts[0]?.n, 0);
  });

  test("an id the operator gave stays a duplicate after its message is pruned; one Steward made is not kept", async () => {
    const central = fleet.node("central");
    const given = `once-${newId()}`;
    const doc = { id: given, toNode: "ship1", method: "cliCommand", methodArgs: ["true"] };
    await fleet.sendOk("central", doc);
    assert.equal((await fleet.waitState("central", given)).state, "done");
    const made = await run(["true"]);
    await waitPruned(given);
    await waitPruned(made);
    assert.deepEqual(rows(central, `SELECT id FROM given_ids WHERE id IN (?, ?)`, given, made), [{ id: given }]);
    const [again] = await fleet.send("central", doc);
    assert.deepEqual(again, { ok: true, id: given, toNode: "ship1", method: "cliCommand", duplicate: true });
    assert.equal(rows(central, `SELECT 1 FROM outbox WHERE id = ?`, given).length, 0, "not stored again");
  });

  test("a running message and a queued one are never pruned, however long they take", async () => {
    const [central, ship1] = [fleet.node("central"), fleet.node("ship1")];
    const go = join(markers, "go");
    const [running] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["bash", "-c", `while [ ! -e ${go} ]; do sleep 0.1; done`],
      methodTimeout: 120,
    });
    // To a node that is not there: it waits, sent again and again.
    const [queued] = await fleet.sendOk("central", {
      toNode: "ship9",
      method: "ping",
      retries: 1000,
      ACKTimeout: 1,
    });
    await fleet.waitState("central", running as string, "running");
    // A message that ended after those started is pruned: pruning has run past their retention.
    await waitPruned(await run(["true"]));

    assert.equal((await fleet.status("central", running as string)).state, "running");
    assert.ok(["queued", "sent"].includes((await fleet.status("central", queued as string)).state));
    assert.deepEqual(rows(ship1, `SELECT state FROM inbox WHERE id = ?`, running), [{ state: "running" }]);

    writeFileSync(go, "");
    assert.equal((await fleet.waitState("central", running as string)).state, "done");
    await waitPruned(running as string);
    assert.equal(traces(central, ship1, queued as string)["origin outbox"], 1, "the queued message is still there");
  });

  test("a replay of a pruned message before its deliverBy is still a duplicate: ACKed, not run again", async () => {
    const ship1 = fleet.node("ship1");
    const mark = join(markers, "appended");
    const cap = attacker.capture("ship1.>");
    const id = await run(["bash", "-c", `echo run >> ${mark}`]);
    cap.stop();
    const frame = cap.frames.find((f) => (frameBody(f.data) as { id?: string } | null)?.id === id);
    assert.ok(frame, "the genuine frame was captured");
    await waitPruned(id);
    const deliverBy = (frameBody(frame.data) as { deliverBy: number }).deliverBy;
    assert.deepEqual(rows(ship1, `SELECT deliver_by FROM dedupe WHERE from_node = 'central' AND id = ?`, id), [
      { deliver_by: deliverBy },
    ]);

    const again = await attacker.request(frame.subject, frame.data);
    assert.deepEqual(openAnswer(await attacker.answer(again), nodeIdentity(ship1)), { ack: id });
    // A later message went through ship1 after the replay: the replay was handled.
    await run(["true"]);
    assert.equal(readFileSync(mark, "utf8"), "run\n", "the command ran once");
    assert.equal(rows(ship1, `SELECT 1 FROM inbox WHERE id = ?`, id).length, 0, "not stored again");
  });
});

describe("retention in the store file", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "steward-test-retention-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Wait until the clock has moved past `at`, so that a retention of 0 covers what ended at `at`. */
  const past = (at: number) => sleepUntil(() => Date.now() > at + 1, { intervalMs: 2 });

  test("a dedupe record outlives the message until its deliverBy, then goes", async () => {
    const store = new Store(join(dir, "dedupe"), "ship1");
    try {
      const m = envelope({ id: newId(), fromNode: "central", toNode: "ship1", deliverBy: Date.now() + 1500 });
      assert.equal(store.incoming.add(m), true);
      store.moveRunToDone(m, undefined);
      await past(Date.now());
      assert.equal((await store.prune(0)).inbox, 1);
      assert.equal(store.incoming.get("central", m.id), undefined, "the message itself is gone");
      assert.equal(store.incoming.add(m), false, "still a duplicate before its deliverBy");
      assert.equal((await store.prune(0)).dedupe, 0);
      await past(m.deliverBy);
      assert.equal((await store.prune(0)).dedupe, 1, "gone after its deliverBy");
    } finally {
      store.close();
    }
  });

  test("keys that waited for approval over a day go with their node row; approved ones stay", async () => {
    const store = new Store(join(dir, "keys"), "central");
    try {
      const old = Date.now() - PENDING_KEY_MS - 1000;
      const key = (name: string, state: "pending" | "approved", at: number) =>
        store.keys.put({ name, publicKey: "k", state, groups: [], labels: {}, firstSeen: at, changedAt: at });
      key("stranger", "pending", old);
      key("newcomer", "pending", Date.now());
      key("ship1", "approved", old);
      store.nodes.recordHello("stranger", old);
      store.nodes.recordHello("ship1", old);
      assert.equal((await store.prune(3600_000)).keys, 1);
      assert.deepEqual(
        store.keys.list().map((k) => k.name),
        ["newcomer", "ship1"],
      );
      assert.deepEqual(
        store.nodes.hellos().map((n) => n.name),
        ["ship1"],
      );
    } finally {
      store.close();
    }
  });

  test("the file shrinks after pruning, and steward nodes' counts follow every move", async () => {
    const store = new Store(join(dir, "shrink"), "central");
    const big = "x".repeat(4000);
    const ids: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const m = envelope({ id: newId(), fromNode: "central", toNode: `ship${i % 3}`, methodArgs: [big] });
      ids.push(m.id);
      store.outgoing.add(m);
      if (i % 10 !== 0) store.outgoing.moveToSent(m.id, 1);
      if (i % 10 > 1) store.outgoing.moveToFinal(m.id, i % 10 === 2 ? "failed" : "done");
    }
    const grouped = () =>
      Object.fromEntries(
        ["ship0", "ship1", "ship2"].map((n) => {
          const mine = ids.map((id) => store.outgoing.get(id)).filter((r) => r?.toNode === n);
          return [
            n,
            {
              pending: mine.filter((r) => r?.state === "queued" || r?.state === "sent").length,
              failed: mine.filter((r) => r?.state === "failed").length,
              total: mine.length,
            },
          ];
        }),
      );
    const counted = () =>
      Object.fromEntries(
        store.nodes.list().map((n) => [n.name, { pending: n.pending, failed: n.failed, total: n.total }]),
      );
    assert.deepEqual(counted(), grouped());
    await store.durable();
    const file = store.path;
    const full = statSync(file).size + statSync(`${file}-wal`).size;
    await past(Date.now());
    const pruned = await store.prune(0);
    assert.equal(pruned.outbox, 2400);
    assert.ok(pruned.pages > 0);
    assert.deepEqual(counted(), grouped());
    store.close();
    const after = statSync(file).size + (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);
    assert.ok(after < full / 2, `the file shrank: ${full} bytes before pruning, ${after} after`);
  });

  test("an ended rollout's record goes once its messages have; a running one, or one with messages left, stays", async () => {
    const store = new Store(join(dir, "rollouts"), "central");
    try {
      // One message a wave: "done" ones end, "pending" ones are held as a later wave is.
      const rollout = (batchId: string, states: ("done" | "pending")[]) =>
        states.forEach((state, i) => {
          const m = envelope({ id: newId(), fromNode: "central", toNode: `ship${i}` });
          store.outgoing.add(m, { batchId, wave: i + 1, waves: states.length, maxErrors: 0 });
          if (state === "done") store.outgoing.moveToFinal(m.id, "done");
        });
      rollout("ended", ["done", "done"]);
      store.outgoing.endBatch("ended", "done");
      rollout("stopped", ["done", "pending"]);
      store.outgoing.endBatch("stopped", "stopped");
      rollout("running", ["done", "pending"]);
      assert.equal(store.outgoing.batch("ended")?.state, "done");
      const pruned = await store.prune(-1);
      assert.equal(pruned.batches, 1);
      assert.equal(store.outgoing.batch("ended"), undefined, "the ended rollout went with its messages");
      assert.equal(store.outgoing.batch("stopped")?.state, "stopped", "its pending message keeps it");
      assert.equal(store.outgoing.batch("running")?.state, "running");
    } finally {
      store.close();
    }
  });

  test("a store from before this migration opens, keeps its rows and shrinks from then on", () => {
    const folder = join(dir, "old");
    mkdirSync(folder);
    const path = join(folder, "central.sqlite");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    for (const step of MIGRATIONS.filter((s) => s.version <= 2)) db.exec(step.sql);
    db.pragma("user_version = 2");
    const insert = db.prepare(
      `INSERT INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, envelope)
       VALUES (?, 'ship1', 'cliCommand', ?, 1, NULL, 1, 1, ?)`,
    );
    for (const [id, state] of [
      ["old-done", "done"],
      ["old-failed", "failed"],
      ["old-sent", "sent"],
    ] as const)
      insert.run(id, state, JSON.stringify(envelope({ id, fromNode: "central", toNode: "ship1" })));
    const received = envelope({ id: "old-received", fromNode: "ship1", toNode: "central" });
    db.prepare(
      `INSERT INTO inbox (from_node, id, state, received_at, updated_at, envelope) VALUES ('ship1', ?, 'done', 1, 1, ?)`,
    ).run(received.id, JSON.stringify(received));
    assert.equal(db.pragma("auto_vacuum", { simple: true }), 0);
    db.close();

    const store = new Store(folder, "central");
    try {
      assert.deepEqual(
        ["old-done", "old-failed", "old-sent"].map((id) => store.outgoing.get(id)?.state),
        ["done", "failed", "sent"],
      );
      assert.equal(store.incoming.get("ship1", "old-received")?.state, "done");
      assert.deepEqual(
        store.nodes.list().map(({ name, pending, failed, total }) => ({ name, pending, failed, total })),
        [{ name: "ship1", pending: 1, failed: 1, total: 3 }],
      );
    } finally {
      store.close();
    }
    const after = new Database(path, { readonly: true });
    try {
      assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION);
      assert.equal(after.pragma("auto_vacuum", { simple: true }), 2, "INCREMENTAL");
    } finally {
      after.close();
    }
  });
});
