/**
 * The node's local store (SQLite, WAL). The node where a message originated
 * owns its state; the broker keeps none (DESIGN §1, §3).
 *
 *  outbox  — every message this node sends: operators' requests and the
 *            replies it produces for others. Its state is the message state
 *            of DESIGN §3.8 (for a reply: queued → sent → acked/failed).
 *  inbox   — every message this node received, keyed by (fromNode, id), so a
 *            re-sent message is recognised and not run twice (§3.4):
 *              received → running → done
 *  nodes   — last hello per node (central), for `steward nodes`.
 *
 * Group commit. The writes of one turn of the event loop share one SQLite
 * transaction, committed on setImmediate (synchronous=NORMAL: the commit puts
 * the pages in the WAL file, in the kernel's hands, without a disk sync).
 * `durable()` resolves once every write made before it is committed and on
 * disk: one fdatasync of the WAL file, run off the event loop, covers every
 * commit before it, so two hundred messages in flight share a commit and a
 * disk sync instead of paying for one each. Whoever is about to tell the world
 * something is stored — an input answering "accepted" (§3.1), the inbox ACKing
 * (§3.2), a run starting (§3.5), a reply going out or being ACKed (§3.6) —
 * awaits `durable()` first. Progress-only writes (sent, acked, running) need
 * no wait: lost in a crash they move a state back, and the re-send is ACKed
 * without running again (§3.4). A write is seen at once by this node's own
 * reads (the same connection), by other processes once committed.
 *
 * Why this is as safe as synchronous=FULL: in WAL mode SQLite writes the
 * database file only in a checkpoint, and a checkpoint syncs the WAL before
 * and the database after it; so the only commits not yet on disk are the WAL
 * frames written since, and fsync flushes a file's dirty pages whichever
 * descriptor wrote them (Linux: per inode). A frame torn by a power cut before
 * its sync fails its checksum and is dropped with its transaction, which no
 * one was told about.
 */
import Database from "better-sqlite3";
import { closeSync, fdatasync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { StoreError } from "../errors.js";
import { type Envelope, FINAL_STATES, type MessageState, type MethodResult } from "../message/message.js";

export interface OutgoingRecord {
  id: string;
  toNode: string;
  method: string;
  state: MessageState;
  attempt: number;
  reason: string | null;
  exitCode: number | null;
  /** Set when this message is a reply this node sends for a request it ran. */
  requestId: string | null;
  createdAt: number;
  updatedAt: number;
  envelope: Envelope;
  /** The reply's data and outcome, once the reply is back. */
  result: (MethodResult & { data?: string }) | null;
}

export interface IncomingRecord {
  fromNode: string;
  id: string;
  state: "received" | "running" | "done";
  runs: number;
  pgid: number | null;
  pstart: string | null;
  receivedAt: number;
  envelope: Envelope;
}

export interface NodeRecord {
  name: string;
  lastSeen: number | null;
  pending: number;
  failed: number;
  total: number;
}

interface OutboxRow {
  id: string;
  to_node: string;
  method: string;
  state: MessageState;
  attempt: number;
  reason: string | null;
  exit_code: number | null;
  request_id: string | null;
  created_at: number;
  updated_at: number;
  envelope: string;
  result: string | null;
}

const SCHEMA = `
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
`;

/** States from which a move to `to` is progress (a late ACK never moves a message back). */
const MOVES_FROM: Record<"sent" | "acked" | "running" | "final" | "replied", MessageState[]> = {
  sent: ["queued", "sent"],
  acked: ["queued", "sent"],
  running: ["queued", "sent", "acked"],
  final: ["queued", "sent", "acked", "running"],
  // A reply is the receiver's word on what happened: it settles even a message we had given up on.
  replied: ["queued", "sent", "acked", "running", "failed"],
};

export class Store {
  readonly path: string;
  private db: Database.Database;
  private stmts;
  private moveStmts = new Map<string, Database.Statement>();
  /** Run `fn` all or nothing (a savepoint inside the turn's transaction). */
  private atomically: <T>(fn: () => T) => T;
  /** The WAL file, opened for fdatasync (see durable()). */
  private walFd: number | undefined;
  /** Writes made so far; how many of them are committed; how many of them the last finished sync covered. */
  private written = 0;
  private committed = 0;
  private synced = 0;
  private syncing = false;
  private finalListeners = new Set<(id: string) => void>();
  /** Disk syncs done so far: with many messages in flight, far fewer than writes. */
  syncs = 0;
  private syncWaiters: { upTo: number; resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(folder: string, nodeName: string) {
    this.path = join(folder, `${nodeName}.sqlite`);
    try {
      mkdirSync(folder, { recursive: true });
      this.db = new Database(this.path);
      this.db.pragma("journal_mode = WAL");
      // NORMAL: commits reach the WAL file at once but are synced by durable(), many at a time (see the top).
      this.db.pragma("synchronous = NORMAL");
      this.db.pragma("busy_timeout = 5000");
      this.db.exec(SCHEMA);
      // The schema write made sure the WAL exists; it stays (same inode) until our connection closes.
      this.walFd = openSync(`${this.path}-wal`, "r");
    } catch (err) {
      throw new StoreError(
        this.path,
        `cannot open: ${(err as Error).message}; check that databaseFolder is a writable folder with free space`,
        err,
      );
    }
    const db = this.db;
    // One wrapper, made once: better-sqlite3 builds a new one per db.transaction() call (a profile's 6 %).
    const atomic = db.transaction((fn: () => unknown) => fn());
    this.atomically = <T>(fn: () => T): T => atomic(fn) as T;
    this.stmts = {
      // Prepared once: exec() would parse them again at every turn.
      begin: db.prepare("BEGIN"),
      commit: db.prepare("COMMIT"),
      insertOut: db.prepare(
        `INSERT OR IGNORE INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, envelope)
         VALUES (@id, @toNode, @method, 'queued', 0, @requestId, @now, @now, @envelope)`,
      ),
      getOut: db.prepare(`SELECT * FROM outbox WHERE id = ?`),
      pendingOut: db.prepare(`SELECT * FROM outbox WHERE state IN ('queued', 'sent') ORDER BY id`),
      listOut: db.prepare(`SELECT * FROM outbox WHERE request_id IS NULL ORDER BY id DESC LIMIT ?`),
      insertIn: db.prepare(
        `INSERT OR IGNORE INTO inbox (from_node, id, state, runs, received_at, updated_at, envelope)
         VALUES (?, ?, 'received', 0, ?, ?, ?)`,
      ),
      getIn: db.prepare(`SELECT * FROM inbox WHERE from_node = ? AND id = ?`),
      startRun: db.prepare(
        `UPDATE inbox SET state = 'running', runs = runs + 1, updated_at = ? WHERE from_node = ? AND id = ?`,
      ),
      recordProcess: db.prepare(`UPDATE inbox SET pgid = ?, pstart = ? WHERE from_node = ? AND id = ?`),
      finishRun: db.prepare(`UPDATE inbox SET state = 'done', updated_at = ? WHERE from_node = ? AND id = ?`),
      unfinishedIn: db.prepare(`SELECT * FROM inbox WHERE state IN ('received', 'running') ORDER BY received_at`),
      hello: db.prepare(
        `INSERT INTO nodes (name, last_seen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen`,
      ),
      nodes: db.prepare(
        `SELECT name, MAX(last_seen) AS last_seen, SUM(pending) AS pending, SUM(failed) AS failed, SUM(total) AS total FROM (
           SELECT name, last_seen, 0 AS pending, 0 AS failed, 0 AS total FROM nodes
           UNION ALL
           SELECT to_node, NULL,
                  SUM(state IN ('queued', 'sent')), SUM(state = 'failed'), COUNT(*)
           FROM outbox WHERE request_id IS NULL GROUP BY to_node
         ) GROUP BY name ORDER BY name`,
      ),
    };
  }

  /** Store a message this node will send. False when that id is already stored (idempotent input). */
  addOutgoing(env: Envelope): boolean {
    return this.write(() => {
      const info = this.stmts.insertOut.run({
        id: env.id,
        toNode: env.toNode,
        method: env.method,
        requestId: env.requestId ?? null,
        now: Date.now(),
        envelope: JSON.stringify(env),
      });
      return info.changes === 1;
    });
  }

  /** Store a whole batch in one transaction (one disk sync); false for ids already stored. */
  addOutgoingMany(envs: Envelope[]): boolean[] {
    return this.write(() => this.atomically(() => envs.map((env) => this.addOutgoing(env))));
  }

  getOutgoing(id: string): OutgoingRecord | undefined {
    const row = this.stmts.getOut.get(id) as OutboxRow | undefined;
    return row && toOutgoing(row);
  }

  /** Messages still to deliver: queued, or sent without an ACK yet. */
  pendingOutgoing(): OutgoingRecord[] {
    return (this.stmts.pendingOut.all() as OutboxRow[]).map(toOutgoing);
  }

  /** The newest operator messages (not the replies this node produced for others). */
  listOutgoing(limit = 50): OutgoingRecord[] {
    return (this.stmts.listOut.all(limit) as OutboxRow[]).map(toOutgoing);
  }

  markSent(id: string, attempt: number): void {
    this.move(id, "sent", MOVES_FROM.sent, { attempt });
  }

  markAcked(id: string): void {
    this.move(id, "acked", MOVES_FROM.acked);
  }

  markRunning(id: string): void {
    this.move(id, "running", MOVES_FROM.running);
  }

  /** A part of a streamed or scheduled result is back: the message runs on; keep the latest part. */
  progress(id: string, result: unknown): void {
    this.move(id, "running", [...MOVES_FROM.running, "running"], { result });
  }

  /** Move to a final state; false when the message already had one. */
  finish(
    id: string,
    state: "done" | "failed" | "expired" | "cancelled",
    fields: { reason?: string | null; exitCode?: number | null; result?: unknown } = {},
  ): boolean {
    return this.move(id, state, MOVES_FROM.final, fields);
  }

  /** The reply to a request is back: record its outcome. */
  settle(
    id: string,
    state: "done" | "failed",
    fields: { reason: string | null; exitCode: number | null; result: unknown },
  ): boolean {
    return this.move(id, state, MOVES_FROM.replied, fields);
  }

  /** Store a received message. False when it was already there (a re-send: ACK again, do not run again). */
  addIncoming(env: Envelope): boolean {
    return this.write(() => {
      const now = Date.now();
      return this.stmts.insertIn.run(env.fromNode, env.id, now, now, JSON.stringify(env)).changes === 1;
    });
  }

  getIncoming(fromNode: string, id: string): IncomingRecord | undefined {
    const row = this.stmts.getIn.get(fromNode, id) as InboxRow | undefined;
    return row && toIncoming(row);
  }

  /** Received messages not run to the end: run them (again) after a restart (§3.5). */
  unfinishedIncoming(): IncomingRecord[] {
    return (this.stmts.unfinishedIn.all() as InboxRow[]).map(toIncoming);
  }

  /** Remember the process group a run started (see `pgid` in the schema). */
  recordProcess(env: Envelope, pgid: number, pstart: string | null): void {
    this.write(() => this.stmts.recordProcess.run(pgid, pstart, env.fromNode, env.id));
    // Committed at once, not at the end of the turn: the process runs already, and a crash must find it.
    this.commit();
  }

  /** Mark a received message running; false when it is not in the store (its turn was rolled back). */
  startRun(env: Envelope): boolean {
    return this.write(() => this.stmts.startRun.run(Date.now(), env.fromNode, env.id).changes === 1);
  }

  /**
   * The method has run: mark the received message done and, in the same
   * transaction, store the reply to send, so that a crash leaves either
   * "run again" or "reply stored", never "ran, reply lost".
   */
  completeRun(env: Envelope, reply: Envelope | undefined, originUpdate?: () => void): void {
    this.write(() =>
      this.atomically(() => {
        this.stmts.finishRun.run(Date.now(), env.fromNode, env.id);
        if (reply) this.addOutgoing(reply);
        originUpdate?.();
      }),
    );
  }

  recordHello(node: string, at = Date.now()): void {
    this.write(() => this.stmts.hello.run(node, at));
  }

  listNodes(): NodeRecord[] {
    return (
      this.stmts.nodes.all() as {
        name: string;
        last_seen: number | null;
        pending: number;
        failed: number;
        total: number;
      }[]
    ).map((r) => ({
      name: r.name,
      lastSeen: r.last_seen,
      pending: r.pending ?? 0,
      failed: r.failed ?? 0,
      total: r.total ?? 0,
    }));
  }

  /**
   * Resolves once every write made before the call is on disk (see the top of
   * this file). Callers waiting at the same time share one fdatasync; writes
   * made while a sync runs wait for the next one.
   */
  durable(): Promise<void> {
    if (this.synced >= this.written) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.syncWaiters.push({ upTo: this.written, resolve, reject });
      this.syncNext();
    });
  }

  /** Commit this turn's transaction now (it commits on setImmediate anyway). */
  commit(): void {
    if (!this.db.open || !this.db.inTransaction) return;
    try {
      this.stmts.commit.run();
      this.committed = this.written;
    } catch (err) {
      this.lost(err);
      return;
    }
    this.syncNext();
  }

  /**
   * The open transaction was rolled back (a failed COMMIT, or SQLite undoing it after
   * SQLITE_FULL/IOERR): every write since the last commit is gone, and so whoever waits
   * on one of them is told so.
   */
  private lost(err: unknown): void {
    if (this.db.open && this.db.inTransaction) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        // Already undone.
      }
    }
    const error = new StoreError(
      this.path,
      `write not stored: ${(err as Error).message}; check free space and permissions of databaseFolder`,
      err,
      true,
    );
    const first = this.committed;
    this.committed = this.written;
    const waiting = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiting) {
      if (w.upTo > first) w.reject(error);
      else this.syncWaiters.push(w);
    }
    this.syncNext();
  }

  private syncNext(): void {
    if (this.syncing || this.syncWaiters.length === 0) return;
    const fd = this.walFd;
    if (fd === undefined) {
      this.settleWaiters(new StoreError(this.path, "store is closed; the message was not confirmed on disk"));
      return;
    }
    // Only committed writes can be synced; the commit at the end of this turn calls again.
    if (this.committed <= this.synced) return;
    this.syncing = true;
    const upTo = this.committed;
    this.syncs++;
    fdatasync(fd, (err) => {
      this.syncing = false;
      if (this.walFd !== fd) closeSync(fd); // closed while this sync ran
      if (err) {
        this.settleWaiters(
          new StoreError(this.path, `disk sync failed: ${err.message}; check the disk of databaseFolder`, err),
        );
      } else {
        this.synced = Math.max(this.synced, upTo);
        this.settleWaiters();
      }
      this.syncNext();
    });
  }

  /** Resolve the waiters the last sync covered, or reject them all when it failed. */
  private settleWaiters(err?: Error): void {
    const waiting = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiting) {
      if (err) w.reject(err);
      else if (w.upTo <= this.synced) w.resolve();
      else this.syncWaiters.push(w);
    }
  }

  /** Call `fn` with the id of every message that moves to a final state; returns the way to stop. */
  onFinal(fn: (id: string) => void): () => void {
    this.finalListeners.add(fn);
    return () => this.finalListeners.delete(fn);
  }

  close(): void {
    this.commit();
    if (this.walFd !== undefined) {
      const fd = this.walFd;
      this.walFd = undefined;
      // A sync still running gets the descriptor closed when it ends (a number reused meanwhile would be synced instead).
      if (!this.syncing) closeSync(fd);
    }
    this.settleWaiters(new StoreError(this.path, "store closed before the write was confirmed on disk"));
    if (this.db.open) this.db.close();
  }

  private move(
    id: string,
    state: MessageState,
    from: MessageState[],
    fields: { attempt?: number; reason?: string | null; exitCode?: number | null; result?: unknown } = {},
  ): boolean {
    const sets = ["state = @state", "updated_at = @now"];
    const params: Record<string, unknown> = { id, state, now: Date.now() };
    if (fields.attempt !== undefined) {
      sets.push("attempt = @attempt");
      params.attempt = fields.attempt;
    }
    if (fields.reason !== undefined) {
      sets.push("reason = @reason");
      params.reason = fields.reason;
    }
    if (fields.exitCode !== undefined) {
      sets.push("exit_code = @exitCode");
      params.exitCode = fields.exitCode;
    }
    if (fields.result !== undefined) {
      sets.push("result = @result");
      params.result = JSON.stringify(fields.result);
    }
    const sql = `UPDATE outbox SET ${sets.join(", ")} WHERE id = @id AND state IN (${from.map((s) => `'${s}'`).join(", ")})`;
    let stmt = this.moveStmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.moveStmts.set(sql, stmt);
    }
    const prepared = stmt;
    const changed = this.write(() => prepared.run(params).changes === 1);
    if (changed && FINAL_STATES.includes(state)) for (const fn of this.finalListeners) fn(id);
    return changed;
  }

  private write<T>(fn: () => T): T {
    try {
      if (!this.db.inTransaction) {
        this.stmts.begin.run();
        setImmediate(() => this.commit());
      }
      this.written++;
      return fn();
    } catch (err) {
      // SQLite undoes the whole transaction after some errors (SQLITE_FULL, IOERR): the turn's other writes are gone too.
      if (!this.db.inTransaction) this.lost(err);
      throw new StoreError(
        this.path,
        `write failed: ${(err as Error).message}; check free space and permissions of databaseFolder`,
        err,
      );
    }
  }
}

interface InboxRow {
  from_node: string;
  id: string;
  state: IncomingRecord["state"];
  runs: number;
  pgid: number | null;
  pstart: string | null;
  received_at: number;
  envelope: string;
}

function toIncoming(row: InboxRow): IncomingRecord {
  return {
    fromNode: row.from_node,
    id: row.id,
    state: row.state,
    runs: row.runs,
    pgid: row.pgid,
    pstart: row.pstart,
    receivedAt: row.received_at,
    envelope: JSON.parse(row.envelope) as Envelope,
  };
}

function toOutgoing(row: OutboxRow): OutgoingRecord {
  return {
    id: row.id,
    toNode: row.to_node,
    method: row.method,
    state: row.state,
    attempt: row.attempt,
    reason: row.reason,
    exitCode: row.exit_code,
    requestId: row.request_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    envelope: JSON.parse(row.envelope) as Envelope,
    result: row.result === null ? null : (JSON.parse(row.result) as OutgoingRecord["result"]),
  };
}
