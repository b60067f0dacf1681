/**
 * The `inbox` table: every message this node received, keyed by (fromNode,
 * id), so that a re-sent message is recognised and not run twice. Its state
 * is an InboxState (src/message/message.ts): received → running → done; a run
 * a graceful stop cut short is `interrupted` until the next start runs it again.
 * A message its origin cancelled keeps its state and says so in `cancelled`
 * until its run ends (src/delivery/runner.ts), which it then does at once.
 */
import type Database from "better-sqlite3";
import type { Envelope, InboxState } from "../message/message.js";
import type { GroupCommit } from "./groupCommit.js";

export interface IncomingRecord {
  fromNode: string;
  id: string;
  state: InboxState;
  runs: number;
  /** The process group the last run started, and its start time (see src/delivery/leftovers.ts). */
  pgid: number | null;
  pstart: string | null;
  receivedAt: number;
  envelope: Envelope;
  /** Set when its origin cancelled it: "cancelled by USER@NODE". */
  cancelled: string | null;
}

/**
 * What a cancel found: the message stored and not finished (now marked), finished already, or not
 * there yet (a tombstone stands in for it: when it arrives it is a duplicate, ACKed and not run).
 */
export type CancelOutcome = "cancelled" | "finished" | "tombstone";

interface InboxRow {
  from_node: string;
  id: string;
  state: InboxState;
  runs: number;
  pgid: number | null;
  pstart: string | null;
  received_at: number;
  envelope: string;
  cancelled: string | null;
}

/**
 * A row with its envelope, which lives in inbox_envelopes with the frame (written once at insert, deleted with
 * its row by a trigger): state moves rewrite only the small inbox row (src/store/migrations.ts, step 8).
 */
const WITH_ENVELOPE = `*, (SELECT envelope FROM inbox_envelopes AS e WHERE e.from_node = inbox.from_node AND e.id = inbox.id) AS envelope`;

export class IncomingTable {
  private readonly stmts;

  constructor(
    db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO inbox (from_node, id, state, runs, received_at, updated_at)
         VALUES (?, ?, 'received', 0, ?, ?)`,
      ),
      insertEnvelope: db.prepare(
        `INSERT OR REPLACE INTO inbox_envelopes (from_node, id, envelope, frame) VALUES (?, ?, ?, ?)`,
      ),
      get: db.prepare(`SELECT ${WITH_ENVELOPE} FROM inbox WHERE from_node = ? AND id = ?`),
      frame: db.prepare(`SELECT frame FROM inbox_envelopes WHERE from_node = ? AND id = ?`).pluck(),
      pruned: db.prepare(`SELECT 1 FROM dedupe WHERE from_node = ? AND id = ?`).pluck(),
      moveToRunning: db.prepare(
        `UPDATE inbox SET state = 'running', runs = runs + 1, updated_at = ? WHERE from_node = ? AND id = ?`,
      ),
      recordProcessGroup: db.prepare(`UPDATE inbox SET pgid = ?, pstart = ? WHERE from_node = ? AND id = ?`),
      // Only a running message: one whose end was stored meanwhile stays done.
      moveToInterrupted: db.prepare(
        `UPDATE inbox SET state = 'interrupted', updated_at = ? WHERE from_node = ? AND id = ? AND state = 'running'`,
      ),
      moveToDone: db.prepare(`UPDATE inbox SET state = 'done', updated_at = ? WHERE from_node = ? AND id = ?`),
      markCancelled: db.prepare(
        `UPDATE inbox SET cancelled = ?, updated_at = ? WHERE from_node = ? AND id = ? AND state IN ('received', 'running', 'interrupted')`,
      ),
      exists: db.prepare(`SELECT 1 FROM inbox WHERE from_node = ? AND id = ?`).pluck(),
      tombstone: db.prepare(`INSERT OR IGNORE INTO dedupe (from_node, id, deliver_by) VALUES (?, ?, ?)`),
      unfinished: db.prepare(
        `SELECT ${WITH_ENVELOPE} FROM inbox WHERE state IN ('received', 'running', 'interrupted') ORDER BY received_at`,
      ),
    };
  }

  /**
   * Store a received message. False when it was already there, or was pruned before its deliverBy
   * (src/store/retention.ts): a re-send or a replay, ACK again, do not run again.
   */
  add(message: Envelope, frame?: Uint8Array): boolean {
    return this.commits.write(() => {
      if (this.stmts.pruned.get(message.fromNode, message.id) !== undefined) return false;
      const now = Date.now();
      const fresh = this.stmts.insert.run(message.fromNode, message.id, now, now).changes === 1;
      if (fresh) {
        const kept = frame ? Buffer.from(frame) : null;
        this.stmts.insertEnvelope.run(message.fromNode, message.id, JSON.stringify(message), kept);
      }
      return fresh;
    });
  }

  /** The signed frame a message arrived in, when it was stored with it (keepsFrame). */
  frame(fromNode: string, id: string): Buffer | undefined {
    return (this.stmts.frame.get(fromNode, id) as Buffer | null | undefined) ?? undefined;
  }

  get(fromNode: string, id: string): IncomingRecord | undefined {
    const row = this.stmts.get.get(fromNode, id) as InboxRow | undefined;
    return row && toRecord(row);
  }

  /**
   * Whether a copy of `fromNode`'s message `id` would be a duplicate here: it is stored, or its id is kept after
   * it was pruned, or after a cancel that came before it (a tombstone).
   */
  seen(fromNode: string, id: string): boolean {
    return this.stmts.exists.get(fromNode, id) !== undefined || this.stmts.pruned.get(fromNode, id) !== undefined;
  }

  /**
   * `fromNode` cancels its message `id`. Only that sender's own message is touched (the key is
   * (fromNode, id)). Not there yet: its id is kept with the dedupe records (src/store/retention.ts) until
   * `deliverBy`, so that the message, arriving later, is a duplicate; past that it is refused as expired.
   */
  cancel(fromNode: string, id: string, reason: string, deliverBy: number): CancelOutcome {
    return this.commits.write(() => {
      if (this.stmts.markCancelled.run(reason, Date.now(), fromNode, id).changes === 1) return "cancelled";
      if (this.seen(fromNode, id)) return "finished";
      this.stmts.tombstone.run(fromNode, id, deliverBy);
      return "tombstone";
    });
  }

  /** Received messages not run to the end: run them (again) after a restart. */
  unfinished(): IncomingRecord[] {
    return (this.stmts.unfinished.all() as InboxRow[]).map(toRecord);
  }

  /** Its run starts; false when the message is not in the store (its turn was rolled back). */
  moveToRunning(message: Envelope): boolean {
    return this.commits.write(
      () => this.stmts.moveToRunning.run(Date.now(), message.fromNode, message.id).changes === 1,
    );
  }

  /**
   * A graceful stop cut its run short (or, for a schedule, stopped it between two runs): at the next start
   * it is run again and its result says `interrupted`, not `rerun` (a run left `running` is a crash's).
   */
  moveToInterrupted(message: Envelope): void {
    this.commits.write(() => this.stmts.moveToInterrupted.run(Date.now(), message.fromNode, message.id));
  }

  /**
   * Its method ended. Only inside the store's verbs that store the run's outcome in the same
   * transaction (Store.moveRunToDone…): on its own it would lose the outcome in a crash.
   */
  moveToDone(message: Envelope): void {
    this.commits.write(() => this.stmts.moveToDone.run(Date.now(), message.fromNode, message.id));
  }

  /** Remember the process group a run started, so that a restart can end what a crash left running. */
  recordProcessGroup(message: Envelope, pgid: number, pstart: string | null): void {
    this.commits.write(() => this.stmts.recordProcessGroup.run(pgid, pstart, message.fromNode, message.id));
    // Committed at once, not at the end of the turn: the process runs already, and a crash must find it.
    this.commits.commit();
  }
}

function toRecord(row: InboxRow): IncomingRecord {
  return {
    fromNode: row.from_node,
    id: row.id,
    state: row.state,
    runs: row.runs,
    pgid: row.pgid,
    pstart: row.pstart,
    receivedAt: row.received_at,
    envelope: JSON.parse(row.envelope) as Envelope,
    cancelled: row.cancelled ?? null,
  };
}
