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
import { MESSAGE_STATES, type MessageFilter } from "../message/filter.js";
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
  // A reply is the receiver's word on what happened: it concludes even a message we had given up on.
  moveToFinalByReply: ["queued", "sent", "acked", "waiting", "running", "failed"],
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
  /** The list and changes queries, one statement per shape of filter. */
  private readonly findStmts = new Map<string, Database.Statement>();
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

  /** The newest operator messages (not the replies this node produced for others), `filter` narrowing them. */
  list(limit = 50, filter: MessageFilter = {}): OutgoingRecord[] {
    const where = filterSql(filter);
    if (!where.sql) return (this.stmts.list.all(limit) as OutboxRow[]).map(toRecord);
    const sql = `SELECT * FROM outbox WHERE request_id IS NULL${where.sql} ORDER BY id DESC LIMIT ?`;
    return (this.prepared(sql).all(...where.params, limit) as OutboxRow[]).map(toRecord);
  }

  /**
   * The operator messages `filter` matches that changed after `after` (their updated time, then id, so that
   * two changes in the same millisecond are both seen), oldest change first: `steward status --watch` asks
   * again from the last one it got. The (state, updated_at) index keeps it to the rows changed since.
   */
  changes(after: { updatedAt: number; id: string }, limit: number, filter: MessageFilter = {}): OutgoingRecord[] {
    const where = filterSql({ ...filter, since: Math.max(filter.since ?? after.updatedAt, after.updatedAt) });
    const sql =
      `SELECT * FROM outbox WHERE request_id IS NULL${where.sql} AND (updated_at > ? OR id > ?)` +
      ` ORDER BY updated_at, id LIMIT ?`;
    return (this.prepared(sql).all(...where.params, after.updatedAt, after.id, limit) as OutboxRow[]).map(toRecord);
  }

  private prepared(sql: string): Database.Statement {
    let stmt = this.findStmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.findStmts.set(sql, stmt);
    }
    return stmt;
  }

  /** Attempt `attempt` went out. */
  moveToSent(id: string, attempt: number): void {
    this.move(id, "sent", MOVES_FROM.moveToSent, { attempt });
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
    state: "done" | "failed" | "expired",
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

/**
 * The WHERE terms of a filter (each after " AND "), values as parameters. A time bound is asked through
 * outbox_by_state (state, updated_at), every state listed when the filter names none: a range per state
 * instead of a scan of the whole outbox. With a time bound, `+to_node` keeps SQLite off outbox_by_node,
 * which it would otherwise prefer and which reads every message ever sent to that node (each poll of --watch).
 */
function filterSql(filter: MessageFilter): { sql: string; params: unknown[] } {
  const terms: string[] = [];
  const params: unknown[] = [];
  const anyOf = (column: string, values: readonly string[] | undefined) => {
    if (!values || values.length === 0) return;
    terms.push(`${column} IN (${values.map(() => "?").join(", ")})`);
    params.push(...values);
  };
  anyOf(filter.since === undefined ? "to_node" : "+to_node", filter.to);
  anyOf("method", filter.methods);
  anyOf("state", filter.states?.length ? filter.states : filter.since !== undefined ? MESSAGE_STATES : undefined);
  if (filter.since !== undefined) {
    terms.push("updated_at >= ?");
    params.push(filter.since);
  }
  return { sql: terms.map((t) => ` AND ${t}`).join(""), params };
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
