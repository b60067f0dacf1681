/**
 * The store's schema, as a history: numbered steps applied in order, each in
 * its own transaction together with the version it reaches, kept in SQLite's
 * `PRAGMA user_version`. A deployed store is upgraded in place, never
 * recreated. A new step goes at the end with the next number; a step already
 * released is never edited.
 *
 *   user_version 0 (new file, or written before versions were kept) ──1──▶ 1 ──2──▶ … ──▶ latest
 *   user_version > latest (written by a newer Steward): refused, nothing is touched
 */
import type Database from "better-sqlite3";
import { StoreError } from "../errors.js";

interface Migration {
  version: number;
  /** What the step does, for the reader. */
  what: string;
  sql: string;
  /**
   * Run before the step's transaction, outside any: for what SQLite cannot do inside one (VACUUM).
   * It must be safe to run again, since a crash between it and the transaction repeats it.
   */
  before?: (db: Database.Database) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    what: "outbox, inbox and nodes tables",
    // IF NOT EXISTS: a store written before versions were kept (user_version 0) holds exactly these, and keeps its rows.
    sql: `
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
  -- The process group a run started, and its start time, so a restart can end what a crash left running.
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
`,
  },
  {
    version: 2,
    what: "central's admitted keys, and the bundle's version and rules",
    sql: `
CREATE TABLE keys (
  name       TEXT PRIMARY KEY,
  public_key TEXT NOT NULL,
  state      TEXT NOT NULL,            -- pending, approved or revoked
  groups     TEXT NOT NULL DEFAULT '[]',
  labels     TEXT NOT NULL DEFAULT '{}',
  first_seen INTEGER NOT NULL,
  changed_at INTEGER NOT NULL
);
CREATE TABLE trust (
  key   TEXT PRIMARY KEY,              -- "bundleVersion", "acl"
  value TEXT NOT NULL
);
`,
  },
  {
    version: 3,
    what: "retention: a file that shrinks, dedupe records, indexes and counts for reads that stay O(recent)",
    // auto_vacuum changes only when the file is rebuilt (VACUUM); INCREMENTAL lets pruning give pages back
    // to the file system in small steps (PRAGMA incremental_vacuum) instead of keeping them free inside it.
    before: (db) => {
      if (db.pragma("auto_vacuum", { simple: true }) === 2) return;
      db.pragma("auto_vacuum = INCREMENTAL");
      db.exec("VACUUM");
    },
    sql: `
-- The ids of received messages pruned before their deliverBy: a replay of one is still a duplicate.
CREATE TABLE dedupe (
  from_node  TEXT NOT NULL,
  id         TEXT NOT NULL,
  deliver_by INTEGER NOT NULL,
  PRIMARY KEY (from_node, id)
) WITHOUT ROWID; -- one B-tree, not two: there can be as many as messages received in maxMessageAge
CREATE INDEX dedupe_by_deadline ON dedupe(deliver_by);
-- Ids the operator gave their messages ("runs once ever", src/inputs/startupFolder.ts), kept after the
-- message itself is pruned: handing the same id in again stays a duplicate. Ids Steward made are not kept.
CREATE TABLE given_ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
-- By state, then by when it ended: pruning finds the old finished rows without reading the others.
DROP INDEX outbox_by_state;
CREATE INDEX outbox_by_state ON outbox(state, updated_at);
DROP INDEX inbox_by_state;
CREATE INDEX inbox_by_state ON inbox(state, updated_at);
-- The operator's messages (not the replies this node sends for others), newest first, for \`steward status\`.
CREATE INDEX outbox_operator ON outbox(id) WHERE request_id IS NULL;
-- Operator messages by receiver and state, kept by triggers at every move, for \`steward nodes\`.
CREATE TABLE outbox_counts (
  to_node TEXT NOT NULL,
  state   TEXT NOT NULL,
  n       INTEGER NOT NULL,
  PRIMARY KEY (to_node, state)
);
INSERT INTO outbox_counts (to_node, state, n)
  SELECT to_node, state, COUNT(*) FROM outbox WHERE request_id IS NULL GROUP BY to_node, state;
CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox WHEN new.request_id IS NULL BEGIN
  INSERT INTO outbox_counts (to_node, state, n) VALUES (new.to_node, new.state, 1)
    ON CONFLICT (to_node, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_counts_move AFTER UPDATE OF state ON outbox
  WHEN new.request_id IS NULL AND old.state <> new.state BEGIN
  UPDATE outbox_counts SET n = n - 1 WHERE to_node = old.to_node AND state = old.state;
  INSERT INTO outbox_counts (to_node, state, n) VALUES (new.to_node, new.state, 1)
    ON CONFLICT (to_node, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox WHEN old.request_id IS NULL BEGIN
  UPDATE outbox_counts SET n = n - 1 WHERE to_node = old.to_node AND state = old.state;
END;
`,
  },
  {
    version: 4,
    what: "batch rollouts: one row per rollout, and each of its messages' rollout and wave",
    sql: `
-- A rollout (src/delivery/batch.ts): how many waves, the errors it tolerates, the wave released last.
CREATE TABLE batches (
  id         TEXT PRIMARY KEY,
  waves      INTEGER NOT NULL,
  max_errors INTEGER,                  -- NULL: no limit
  wave       INTEGER NOT NULL,
  state      TEXT NOT NULL,            -- running, stopped (more errors than max_errors) or done
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX batches_running ON batches(id) WHERE state = 'running';
ALTER TABLE outbox ADD COLUMN batch_id TEXT;
ALTER TABLE outbox ADD COLUMN wave INTEGER;
CREATE INDEX outbox_by_batch ON outbox(batch_id, wave) WHERE batch_id IS NOT NULL;
`,
  },
  {
    version: 5,
    what: "the labels each node announces in its hello, kept apart from those the operator sets",
    sql: `ALTER TABLE keys ADD COLUMN announced_labels TEXT NOT NULL DEFAULT '{}';`,
  },
  {
    version: 6,
    what: "inbox: a received message its origin cancelled",
    sql: `
-- "cancelled by USER@NODE": the origin withdrew it (steward cancel); it is not run, not even after a restart.
ALTER TABLE inbox ADD COLUMN cancelled TEXT;
`,
  },
  {
    version: 7,
    what: "inbox: the signed frame a copySrc arrived in",
    sql: `
-- Kept for the methods that hand it on (keepsFrame in src/message/methods.ts): copySrc's chunks carry it as the
-- operator's grant, also after a restart.
ALTER TABLE inbox ADD COLUMN frame BLOB;
`,
  },
  {
    version: 8,
    what: "a message's envelope (and the frame it arrived in) in a table of its own, which state moves never touch",
    // SQLite writes a row again whole, overflow pages included, at each UPDATE: a chunk's envelope (about 350 KB)
    // was written at every move of its state (docs/PERFORMANCE.md). Now it is written once, at insert.
    sql: `
CREATE TABLE outbox_envelopes (
  id       TEXT PRIMARY KEY,
  envelope TEXT NOT NULL
);
INSERT INTO outbox_envelopes (id, envelope) SELECT id, envelope FROM outbox;
ALTER TABLE outbox DROP COLUMN envelope;
CREATE TRIGGER outbox_envelopes_delete AFTER DELETE ON outbox BEGIN
  DELETE FROM outbox_envelopes WHERE id = old.id;
END;
CREATE TABLE inbox_envelopes (
  from_node TEXT NOT NULL,
  id        TEXT NOT NULL,
  envelope  TEXT NOT NULL,
  frame     BLOB,
  PRIMARY KEY (from_node, id)
);
INSERT INTO inbox_envelopes (from_node, id, envelope, frame) SELECT from_node, id, envelope, frame FROM inbox;
ALTER TABLE inbox DROP COLUMN envelope;
ALTER TABLE inbox DROP COLUMN frame;
CREATE TRIGGER inbox_envelopes_delete AFTER DELETE ON inbox BEGIN
  DELETE FROM inbox_envelopes WHERE from_node = old.from_node AND id = old.id;
END;
`,
  },
];

/** The schema version this code writes and reads: the last step's (steps are numbered 1, 2, 3… with no gap: a store at version N runs every step above N). */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Bring the store at `path` up to SCHEMA_VERSION; returns the version it had. */
export function migrate(db: Database.Database, path: string): number {
  const found = db.pragma("user_version", { simple: true }) as number;
  if (found > SCHEMA_VERSION) {
    throw new StoreError(
      path,
      `schema version ${found} is newer than this Steward knows (${SCHEMA_VERSION}); ` +
        `run the Steward version that wrote it or a newer one, or move the file away to start with an empty store`,
    );
  }
  for (const step of MIGRATIONS) {
    if (step.version <= found) continue;
    step.before?.(db);
    db.transaction(() => {
      db.exec(step.sql);
      db.pragma(`user_version = ${step.version}`);
    })();
  }
  return found;
}
