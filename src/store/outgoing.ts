/**
 * The `outbox` table: every message this node sends — operators' requests and
 * the replies it produces for others. The node where a message originated owns
 * its state; the broker keeps none. Its state is a MessageState
 * (src/message/message.ts); for a reply this node sends: queued → sent → done/failed.
 *
 * Each move names the state it moves to and is made only from the states in
 * MOVES_FROM, so a late ACK or notice never moves a message back.
 */
import type Database from "better-sqlite3";
import { type Envelope, FINAL_STATES, type MessageState, type MethodResult } from "../message/message.js";
import type { GroupCommit } from "./groupCommit.js";

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

/** A final state this node concludes itself (the receiver's reply concludes with done or failed only). */
export type FinalState = "done" | "failed" | "expired" | "cancelled";

interface OutcomeFields {
  reason?: string | null;
  exitCode?: number | null;
  result?: unknown;
}

/** For each move, the states it may be made from. */
const MOVES_FROM = {
  moveToSent: ["queued", "sent"],
  moveToAcked: ["queued", "sent"],
  // Its notice may come before the ACK: the receiver has it stored either way.
  moveToWaiting: ["queued", "sent", "acked"],
  moveToRunning: ["queued", "sent", "acked", "waiting"],
  // A further part of a streamed or scheduled result may come while it runs already.
  moveToRunningWithPart: ["queued", "sent", "acked", "waiting", "running"],
  moveToFinal: ["queued", "sent", "acked", "waiting", "running"],
  // A reply is the receiver's word on what happened: it concludes even a message we had given up on, or had
  // cancelled while it ran there (src/delivery/replies.ts says how).
  moveToFinalByReply: ["queued", "sent", "acked", "waiting", "running", "failed", "cancelled"],
} satisfies Record<string, MessageState[]>;

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

export class OutgoingTable {
  private readonly stmts;
  private readonly moveStmts = new Map<string, Database.Statement>();
  private readonly finalListeners = new Set<(id: string) => void>();

  constructor(
    private readonly db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, envelope)
         SELECT @id, @toNode, @method, 'queued', 0, @requestId, @now, @now, @envelope
         WHERE NOT EXISTS (SELECT 1 FROM given_ids WHERE id = @id)`,
      ),
      get: db.prepare(`SELECT * FROM outbox WHERE id = ?`),
      pending: db.prepare(`SELECT * FROM outbox WHERE state IN ('queued', 'sent') ORDER BY id`),
      list: db.prepare(`SELECT * FROM outbox WHERE request_id IS NULL ORDER BY id DESC LIMIT ?`),
      unfinished: db.prepare(
        `SELECT * FROM outbox WHERE state IN ('queued', 'sent', 'acked', 'waiting', 'running') AND request_id IS NULL ORDER BY id`,
      ),
    };
  }

  /** Store a message this node will send, queued. False when that id is already stored (idempotent input). */
  add(message: Envelope): boolean {
    return this.commits.write(() => {
      const info = this.stmts.insert.run({
        id: message.id,
        toNode: message.toNode,
        method: message.method,
        requestId: message.requestId ?? null,
        now: Date.now(),
        envelope: JSON.stringify(message),
      });
      return info.changes === 1;
    });
  }

  /** Store a whole batch in one transaction (one disk sync); false for ids already stored. */
  addMany(messages: Envelope[]): boolean[] {
    return this.commits.write(() => this.commits.atomically(() => messages.map((message) => this.add(message))));
  }

  get(id: string): OutgoingRecord | undefined {
    const row = this.stmts.get.get(id) as OutboxRow | undefined;
    return row && toRecord(row);
  }

  /** Messages still to deliver: queued, or sent without an ACK yet. */
  pending(): OutgoingRecord[] {
    return (this.stmts.pending.all() as OutboxRow[]).map(toRecord);
  }

  /** The newest operator messages (not the replies this node produced for others). */
  list(limit = 50): OutgoingRecord[] {
    return (this.stmts.list.all(limit) as OutboxRow[]).map(toRecord);
  }

  /** The operator's messages not yet in a final state, oldest first (`steward cancel` with filters). */
  unfinished(): OutgoingRecord[] {
    return (this.stmts.unfinished.all() as OutboxRow[]).map(toRecord);
  }

  /** Attempt `attempt` goes out; false when the message has moved on meanwhile (cancelled): do not send it. */
  moveToSent(id: string, attempt: number): boolean {
    return this.move(id, "sent", MOVES_FROM.moveToSent, { attempt });
  }

  /** The receiver ACKed it: stored there, its reply to come. */
  moveToAcked(id: string): void {
    this.move(id, "acked", MOVES_FROM.moveToAcked);
  }

  /** The receiver has it stored, and it waits there for a free run. */
  moveToWaiting(id: string): void {
    this.move(id, "waiting", MOVES_FROM.moveToWaiting);
  }

  /** The receiver says the method runs. */
  moveToRunning(id: string): void {
    this.move(id, "running", MOVES_FROM.moveToRunning);
  }

  /** A part of a streamed or scheduled result is back: the message runs on; keep the latest part. */
  moveToRunningWithPart(id: string, part: unknown): void {
    this.move(id, "running", MOVES_FROM.moveToRunningWithPart, { result: part });
  }

  /**
   * This node concludes: delivered and nothing to wait for (done), retries spent or refused (failed).
   * False when the message already had a final state.
   */
  moveToFinal(id: string, state: FinalState, fields: OutcomeFields = {}): boolean {
    return this.move(id, state, MOVES_FROM.moveToFinal, fields);
  }

  /** The reply to a request is back and concludes it, even one this node had given up on (failed). */
  moveToFinalByReply(
    id: string,
    state: "done" | "failed" | "cancelled",
    fields: { reason: string | null; exitCode: number | null; result: unknown },
  ): boolean {
    return this.move(id, state, MOVES_FROM.moveToFinalByReply, fields);
  }

  /** Call `fn` with the id of every message that moves to a final state; returns the way to stop. */
  onFinal(fn: (id: string) => void): () => void {
    this.finalListeners.add(fn);
    return () => this.finalListeners.delete(fn);
  }

  private move(
    id: string,
    state: MessageState,
    from: MessageState[],
    fields: OutcomeFields & { attempt?: number } = {},
  ) {
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
    const changed = this.commits.write(() => prepared.run(params).changes === 1);
    if (changed && FINAL_STATES.includes(state)) for (const fn of this.finalListeners) fn(id);
    return changed;
  }
}

function toRecord(row: OutboxRow): OutgoingRecord {
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
