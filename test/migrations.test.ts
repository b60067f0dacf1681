/**
 * The store's schema history (src/store/migrations.ts): a store written
 * before versions were kept is upgraded in place with every message kept, and
 * a store from a newer Steward is refused with a reason. Real SQLite files.
 */
import Database from "better-sqlite3";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StoreError } from "../src/errors.js";
import { MIGRATIONS, SCHEMA_VERSION } from "../src/store/migrations.js";
import { Store } from "../src/store/store.js";
import { envelope } from "./helpers/delivery-helpers.js";

/** The schema exactly as Steward wrote it before versions were kept (user_version 0). */
const UNVERSIONED_SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  id         TEXT PRIMARY KEY,
  to_node    TEXT NOT NULL,
  method     TEXT NOT NULL,
  state      TEXT NOT NULL,
  attempt    INTEGER NOT NULL DEFAULT 0,
  reason     TEXT,
  exit_code  INTEGER,
  request_id TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  envelope   TEXT NOT NULL,
  result     TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox(state);
CREATE INDEX IF NOT EXISTS outbox_by_node ON outbox(to_node);
CREATE TABLE IF NOT EXISTS inbox (
  from_node   TEXT NOT NULL,
  id          TEXT NOT NULL,
  state       TEXT NOT NULL,
  runs        INTEGER NOT NULL DEFAULT 0,
  pgid        INTEGER,
  pstart      TEXT,
  received_at INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  envelope    TEXT NOT NULL,
  PRIMARY KEY (from_node, id)
);
CREATE INDEX IF NOT EXISTS inbox_by_state ON inbox(state);
CREATE TABLE IF NOT EXISTS nodes (
  name      TEXT PRIMARY KEY,
  last_seen INTEGER NOT NULL
);
`;

/** A message as the old code stored it. */
const message = (id: string, fromNode: string, toNode: string) =>
  envelope({ id, fromNode, toNode, methodArgs: ["true"], attempt: 0 });

/** A store file as the code before migrations left it: the old schema, queued and sent messages, one received. */
function writeUnversionedStore(folder: string, nodeName: string): string {
  mkdirSync(folder, { recursive: true });
  const path = join(folder, `${nodeName}.sqlite`);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.exec(UNVERSIONED_SCHEMA);
  const insertOut = db.prepare(
    `INSERT INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, envelope)
     VALUES (?, 'ship1', 'cliCommand', ?, ?, NULL, 1, 1, ?)`,
  );
  insertOut.run("old-queued", "queued", 0, JSON.stringify(message("old-queued", nodeName, "ship1")));
  insertOut.run("old-sent", "sent", 2, JSON.stringify(message("old-sent", nodeName, "ship1")));
  insertOut.run("old-done", "done", 1, JSON.stringify(message("old-done", nodeName, "ship1")));
  db.prepare(
    `INSERT INTO inbox (from_node, id, state, runs, received_at, updated_at, envelope) VALUES (?, ?, 'received', 0, 5, 5, ?)`,
  ).run("ship2", "old-received", JSON.stringify(message("old-received", "ship2", nodeName)));
  db.prepare(`INSERT INTO nodes (name, last_seen) VALUES ('ship1', 7)`).run();
  assert.equal(db.pragma("user_version", { simple: true }), 0);
  db.close();
  return path;
}

function userVersion(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("user_version", { simple: true }) as number;
  } finally {
    db.close();
  }
}

describe("store: schema migrations", () => {
  test("the steps are numbered 1, 2, 3… with no gap: a store at version N runs every step above N", () => {
    assert.deepEqual(
      MIGRATIONS.map((m) => m.version),
      MIGRATIONS.map((_, i) => i + 1),
    );
    assert.equal(SCHEMA_VERSION, MIGRATIONS.length);
  });

  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "steward-test-migrations-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a store written before versions were kept is upgraded with every message kept, and works", async () => {
    const folder = join(dir, "old");
    const path = writeUnversionedStore(folder, "central");
    const store = new Store(folder, "central");
    try {
      assert.equal(userVersion(path), SCHEMA_VERSION);
      assert.deepEqual(
        store.outgoing.pending().map((r) => [r.id, r.state, r.attempt]),
        [
          ["old-queued", "queued", 0],
          ["old-sent", "sent", 2],
        ],
      );
      assert.equal(store.outgoing.get("old-done")?.state, "done");
      assert.deepEqual(
        store.incoming.unfinished().map((r) => [r.fromNode, r.id, r.state]),
        [["ship2", "old-received", "received"]],
      );
      assert.deepEqual(
        store.nodes.list().map((n) => [n.name, n.lastSeen, n.pending]),
        [["ship1", 7, 2]],
      );

      // New writes, old rows moved on.
      assert.equal(store.outgoing.add(message("new-1", "central", "ship1")), true);
      store.outgoing.moveToSent("old-queued", 1);
      assert.equal(store.incoming.moveToRunning(message("old-received", "ship2", "central")), true);
      await store.durable();
      assert.equal(store.outgoing.get("new-1")?.state, "queued");
      assert.equal(store.outgoing.get("old-queued")?.state, "sent");
      assert.equal(store.incoming.get("ship2", "old-received")?.state, "running");
    } finally {
      store.close();
    }
    // Opened again: already at the latest version, nothing lost.
    const again = new Store(folder, "central");
    try {
      assert.equal(again.outgoing.pending().length, 3);
      assert.equal(userVersion(path), SCHEMA_VERSION);
    } finally {
      again.close();
    }
  });

  test("a store at version 7 moves its envelopes and frames to their own tables: every row reads back whole", async () => {
    const folder = join(dir, "v7");
    mkdirSync(folder, { recursive: true });
    const path = join(folder, "central.sqlite");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    for (const step of MIGRATIONS.filter((m) => m.version <= 7)) {
      step.before?.(db);
      db.exec(step.sql);
    }
    db.pragma("user_version = 7");
    const sent = [message("v7-queued", "central", "ship1"), message("v7-done", "central", "ship1")];
    const insertOut = db.prepare(
      `INSERT INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, envelope, result)
       VALUES (?, 'ship1', 'cliCommand', ?, 1, NULL, 1, 2, ?, ?)`,
    );
    insertOut.run("v7-queued", "queued", JSON.stringify(sent[0]), null);
    insertOut.run("v7-done", "done", JSON.stringify(sent[1]), JSON.stringify({ exitCode: 0, data: "hi" }));
    const received = message("v7-received", "ship2", "central");
    const frame = Buffer.from([1, 2, 3, 250]);
    db.prepare(
      `INSERT INTO inbox (from_node, id, state, runs, received_at, updated_at, envelope, frame)
       VALUES ('ship2', ?, 'running', 1, 5, 6, ?, ?)`,
    ).run(received.id, JSON.stringify(received), frame);
    db.close();

    const store = new Store(folder, "central");
    try {
      assert.equal(userVersion(path), 8);
      assert.deepEqual(store.outgoing.get("v7-queued")?.envelope, sent[0]);
      assert.deepEqual(store.outgoing.get("v7-done")?.envelope, sent[1]);
      assert.deepEqual(store.outgoing.get("v7-done")?.result, { exitCode: 0, data: "hi" });
      assert.deepEqual(
        store.outgoing.pending().map((r) => r.envelope),
        [sent[0]],
      );
      assert.deepEqual(
        store.outgoing.list().map((r) => [r.id, r.state, r.attempt]),
        [
          ["v7-queued", "queued", 1],
          ["v7-done", "done", 1],
        ],
      );
      const row = store.incoming.get("ship2", "v7-received");
      assert.deepEqual([row?.state, row?.runs, row?.envelope], ["running", 1, received]);
      assert.deepEqual(store.incoming.frame("ship2", "v7-received"), frame);
      assert.deepEqual(
        store.incoming.unfinished().map((r) => r.envelope),
        [received],
      );
      // A state move leaves the envelope as it was.
      store.outgoing.moveToSent("v7-queued", 2);
      await store.durable();
      assert.deepEqual(store.outgoing.get("v7-queued")?.envelope, sent[0]);
    } finally {
      store.close();
    }
    // The envelopes left the rows: the rows themselves are small now. Deleting a row deletes its envelope.
    const upgraded = new Database(path);
    try {
      const columns = (table: string) =>
        (upgraded.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[]).filter((c) =>
          ["envelope", "frame"].includes(c),
        );
      assert.deepEqual([columns("outbox"), columns("inbox")], [[], []]);
      upgraded.prepare(`DELETE FROM outbox WHERE id = 'v7-done'`).run();
      upgraded.prepare(`DELETE FROM inbox WHERE id = 'v7-received'`).run();
      assert.deepEqual(upgraded.prepare(`SELECT id FROM outbox_envelopes`).pluck().all(), ["v7-queued"]);
      assert.equal(upgraded.prepare(`SELECT COUNT(*) FROM inbox_envelopes`).pluck().get(), 0);
    } finally {
      upgraded.close();
    }
  });

  test("a store from a newer Steward is refused, untouched, with what to do", () => {
    const folder = join(dir, "newer");
    const path = writeUnversionedStore(folder, "central");
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(
      () => new Store(folder, "central"),
      (err: unknown) =>
        err instanceof StoreError &&
        err.message.includes(`schema version ${SCHEMA_VERSION + 1} is newer`) &&
        /run the Steward version that wrote it or a newer one/.test(err.message),
    );
    assert.equal(userVersion(path), SCHEMA_VERSION + 1);
  });
});
