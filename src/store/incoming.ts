/**
 * The `inbox` table: every message this node received, keyed by (fromNode,
 * id), so that a re-sent message is recognised and not run twice. Its state
 * is an InboxState (src/message/message.ts): received → running → done; a run
 * a graceful stop cut short is `interrupted` until the next start runs it again.
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
}

interface InboxRow {
  from_node: string;
  id: string;
  state: InboxState;
  runs: number;
  pgid: number | null;
  pstart: string | null;
  received_at: number;
  envelope: string;
}

export class IncomingTable {
  private readonly stmts;

  constructor(
    db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO inbox (from_node, id, state, runs, received_at, updated_at, envelope)
         VALUES (?, ?, 'received', 0, ?, ?, ?)`,
      ),
      get: db.prepare(`SELECT * FROM inbox WHERE from_node = ? AND id = ?`),
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
      unfinished: db.prepare(
        `SELECT * FROM inbox WHERE state IN ('received', 'running', 'interrupted') ORDER BY received_at`,
      ),
    };
  }

  /**
   * Store a received message. False when it was already there, or was pruned before its deliverBy
   * (src/store/retention.ts): a re-send or a replay, ACK again, do not run again.
   */
  add(message: Envelope): boolean {
    return this.commits.write(() => {
      if (this.stmts.pruned.get(message.fromNode, message.id) !== undefined) return false;
      const now = Date.now();
      return this.stmts.insert.run(message.fromNode, message.id, now, now, JSON.stringify(message)).changes === 1;
    });
  }

  get(fromNode: string, id: string): IncomingRecord | undefined {
    const row = this.stmts.get.get(fromNode, id) as InboxRow | undefined;
    return row && toRecord(row);
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
  };
}
