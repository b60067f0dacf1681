/**
 * Retention: the store keeps what is recent and what still matters, and gives
 * the rest back to the file system, so that it does not grow forever.
 *
 *   outbox  a message in a final state (done, failed, expired, cancelled)  ── `retention` after it ended ──▶ deleted,
 *           an id the operator gave it kept in `given_ids`, so that the same id handed in again stays a duplicate
 *   inbox   a received message whose method ended (done)                  ── `retention` after it ended ──▶ deleted,
 *           its (fromNode, id) kept in `dedupe` while its deliverBy is still ahead
 *   dedupe  the id of a pruned received message                           ── past its deliverBy ──▶ deleted
 *   keys    a key that waited for approval and never got it (pending)     ── a day after it came ──▶ deleted,
 *           with its row in `nodes`
 *   batches a rollout that ended (done, stopped), none of its messages     ── `retention` after it ended ──▶ deleted
 *           left in the outbox (a stopped one's pending messages keep it until they are cancelled and pruned)
 *
 * Until its deliverBy a replay of a message is a duplicate (ACKed, never run again); after it the inbox
 * refuses it as expired (src/delivery/inbox.ts). So a dedupe record outlives `retention` when deliverBy is
 * later, and never lives past deliverBy. Nothing unfinished is ever pruned.
 *
 * Pruning runs in batches of BATCH rows, each its own short transaction, yielding to the event loop between
 * them, so delivery never waits for long; then the freed pages go back to the file system
 * (PRAGMA incremental_vacuum, the store has auto_vacuum = INCREMENTAL: see migrations.ts), a few at a time.
 */
import type Database from "better-sqlite3";
import { setImmediate as nextTurn } from "node:timers/promises";
import { FINAL_STATES } from "../message/message.js";
import { now } from "../security/clock.js";
import type { GroupCommit } from "./groupCommit.js";

/** The shape of an id Steward made (src/message/id.ts). */
const MADE_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** Rows per transaction: a few milliseconds of work, so delivery goes on in between. */
export const BATCH = 1000;
/** Pages given back per transaction (4 KiB each). */
const VACUUM_PAGES = 2000;
/** How long a key may wait for approval before it is forgotten (the node says hello again if it is still there). */
export const PENDING_KEY_MS = 24 * 3600 * 1000;

/** Rows deleted by one pruning, by table. */
export interface Pruned {
  outbox: number;
  inbox: number;
  dedupe: number;
  keys: number;
  batches: number;
  /** Pages given back to the file system. */
  pages: number;
}

interface InboxDoneRow {
  rowid: number;
  from_node: string;
  id: string;
  deliver_by: number | null;
}

export class Retention {
  private readonly stmts;
  private running: Promise<Pruned> | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    const finals = FINAL_STATES.map((s) => `'${s}'`).join(", ");
    this.stmts = {
      // Found through the (state, updated_at) index, BATCH at a time: never a scan or sort of the outbox.
      outboxDone: db.prepare(
        `SELECT rowid, id, request_id FROM outbox WHERE state IN (${finals}) AND updated_at < ? LIMIT ${BATCH}`,
      ),
      outboxDelete: db.prepare(`DELETE FROM outbox WHERE rowid = ?`),
      keepGiven: db.prepare(`INSERT OR IGNORE INTO given_ids (id) VALUES (?)`),
      inboxDone: db.prepare(
        `SELECT rowid, from_node, id,
           (SELECT json_extract(envelope, '$.deliverBy') FROM inbox_envelopes AS e
            WHERE e.from_node = inbox.from_node AND e.id = inbox.id) AS deliver_by
         FROM inbox WHERE state = 'done' AND updated_at < ? LIMIT ${BATCH}`,
      ),
      inboxDelete: db.prepare(`DELETE FROM inbox WHERE rowid = ?`),
      remember: db.prepare(`INSERT OR IGNORE INTO dedupe (from_node, id, deliver_by) VALUES (?, ?, ?)`),
      dedupe: db.prepare(
        `DELETE FROM dedupe WHERE (from_node, id) IN
           (SELECT from_node, id FROM dedupe WHERE deliver_by < ? LIMIT ${BATCH})`,
      ),
      pendingNodes: db.prepare(
        `DELETE FROM nodes WHERE name IN
           (SELECT name FROM keys WHERE state = 'pending' AND changed_at < ? LIMIT ${BATCH})`,
      ),
      pendingKeys: db.prepare(
        `DELETE FROM keys WHERE rowid IN
           (SELECT rowid FROM keys WHERE state = 'pending' AND changed_at < ? LIMIT ${BATCH})`,
      ),
      // Through outbox_by_batch for each candidate: a rollout some message still belongs to is kept.
      batches: db.prepare(
        `DELETE FROM batches WHERE id IN
           (SELECT id FROM batches AS b WHERE state <> 'running' AND updated_at < ?
              AND NOT EXISTS (SELECT 1 FROM outbox WHERE batch_id = b.id) LIMIT ${BATCH})`,
      ),
      freePages: db.prepare(`PRAGMA freelist_count`).pluck(),
    };
  }

  /**
   * Delete what `retentionMs` no longer keeps, batch by batch, then give the freed pages back.
   * Called again while it runs, it returns the run in progress.
   */
  prune(retentionMs: number): Promise<Pruned> {
    this.running ??= this.pruneAll(retentionMs).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pruneAll(retentionMs: number): Promise<Pruned> {
    const pruned: Pruned = { outbox: 0, inbox: 0, dedupe: 0, keys: 0, batches: 0, pages: 0 };
    const ended = Date.now() - retentionMs;
    const steps: [keyof Pruned, () => number][] = [
      ["outbox", () => this.pruneOutbox(ended)],
      // After the outbox: a rollout goes once its last message has.
      ["batches", () => this.stmts.batches.run(ended).changes],
      ["inbox", () => this.pruneInbox(ended)],
      // Judged by the same clock as the inbox's expiry check, so a record goes only once a replay is refused anyway.
      ["dedupe", () => this.stmts.dedupe.run(now()).changes],
      [
        "keys",
        () => {
          const before = Date.now() - PENDING_KEY_MS;
          this.stmts.pendingNodes.run(before);
          return this.stmts.pendingKeys.run(before).changes;
        },
      ],
    ];
    for (const [table, step] of steps) {
      for (;;) {
        if (!this.db.open) return pruned; // the node stopped meanwhile
        const n = this.batch(step);
        pruned[table] += n;
        await nextTurn();
        if (n < BATCH) break;
      }
    }
    for (;;) {
      if (!this.db.open) return pruned;
      const free = this.stmts.freePages.get() as number;
      if (free === 0) break;
      this.batch(() => this.db.pragma(`incremental_vacuum(${VACUUM_PAGES})`));
      pruned.pages += Math.min(free, VACUUM_PAGES);
      await nextTurn();
    }
    // The file shrinks when the WAL is written back; without it, only at the next automatic checkpoint.
    if (pruned.pages > 0 && this.db.open && !this.db.inTransaction) this.db.pragma("wal_checkpoint(PASSIVE)");
    return pruned;
  }

  /**
   * Messages this node sent that ended: deleted; an id the operator gave one is kept (given_ids), so that
   * handing it in again stays a duplicate. An id Steward made (src/message/id.ts: 26 characters of
   * Crockford base32) cannot come back from an input, so it is not kept.
   */
  private pruneOutbox(ended: number): number {
    const rows = this.stmts.outboxDone.all(ended) as { rowid: number; id: string; request_id: string | null }[];
    for (const row of rows) {
      if (row.request_id === null && !MADE_ID.test(row.id)) this.stmts.keepGiven.run(row.id);
      this.stmts.outboxDelete.run(row.rowid);
    }
    return rows.length;
  }

  /** Received messages that ended: deleted, their ids kept while a replay could still arrive in time. */
  private pruneInbox(ended: number): number {
    const rows = this.stmts.inboxDone.all(ended) as InboxDoneRow[];
    const at = now();
    for (const row of rows) {
      if (row.deliver_by !== null && row.deliver_by >= at)
        this.stmts.remember.run(row.from_node, row.id, row.deliver_by);
      this.stmts.inboxDelete.run(row.rowid);
    }
    return rows.length;
  }

  /** One batch in its own transaction, committed at once (pruning is not worth a disk sync of its own). */
  private batch<T>(fn: () => T): T {
    const result = this.commits.write(() => this.commits.atomically(fn));
    this.commits.commit();
    return result;
  }
}
