/**
 * The `outbox` table: every message this node sends — operators' requests and
 * the replies it produces for others. The node where a message originated owns
 * its state; the broker keeps none. Its state is a MessageState
 * (src/message/message.ts); for a reply this node sends: queued → sent → done/failed.
 *
 * Each move names the state it moves to and is made only from the states in
 * MOVES_FROM, so a late ACK or notice never moves a message back.
 *
 * A message of a batch rollout carries its rollout's id and its wave, and is stored `pending` until its
 * wave is released (the `batches` table keeps each rollout; src/delivery/batch.ts decides).
 */
import type Database from "better-sqlite3";
import { MESSAGE_STATES, type MessageFilter } from "../message/filter.js";
import { type Envelope, FINAL_STATES, type MessageState, type MethodResult } from "../message/message.js";
import type { GroupCommit } from "./groupCommit.js";

/** A message as lists show it: everything but its envelope, which they do not read (a chunk's is large). */
export type OutgoingSummary = Omit<OutgoingRecord, "envelope">;

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
  /** The batch rollout it belongs to, and its wave there (from 1); null outside one. */
  batchId: string | null;
  wave: number | null;
}

/** Where a message goes in a batch rollout: its rollout (created with its first message) and its wave. */
export interface WavePlacement {
  batchId: string;
  wave: number;
  waves: number;
  maxErrors: number | null;
}

/**
 * A batch rollout's life:
 *   running ──errors pass maxErrors──▶ stopped (its later waves stay pending)
 *      └──── its last wave ended ────▶ done
 */
export type BatchState = "running" | "stopped" | "done";

export interface BatchRecord {
  id: string;
  waves: number;
  /** Errors it tolerates; null: no limit. */
  maxErrors: number | null;
  /** The wave released last (1 at first). */
  wave: number;
  state: BatchState;
}

/** What the rollout needs to know of each of its messages. */
export interface BatchMember {
  id: string;
  wave: number;
  state: MessageState;
  exitCode: number | null;
  /** The method's own error, from its result. */
  error: string | null;
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
  // A pending message (a wave not released) may be concluded too: cancelled, say.
  moveToFinal: ["pending", "queued", "sent", "acked", "waiting", "running"],
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
  batch_id: string | null;
  wave: number | null;
}

/**
 * A row with its envelope, which lives in outbox_envelopes (written once at insert, deleted with its row by a
 * trigger): state moves rewrite only the small outbox row (src/store/migrations.ts, step 8).
 */
const WITH_ENVELOPE = `*, (SELECT envelope FROM outbox_envelopes WHERE outbox_envelopes.id = outbox.id) AS envelope`;

type SummaryRow = Omit<OutboxRow, "envelope">;

interface BatchRow {
  id: string;
  waves: number;
  max_errors: number | null;
  wave: number;
  state: BatchState;
}

export class OutgoingTable {
  private readonly stmts;
  private readonly moveStmts = new Map<string, Database.Statement>();
  /** The list and changes queries, one statement per shape of filter. */
  private readonly findStmts = new Map<string, Database.Statement>();
  private readonly finalListeners = new Set<(id: string) => void>();
  private readonly batchListeners = new Set<(batchId: string) => void>();

  constructor(
    private readonly db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO outbox (id, to_node, method, state, attempt, request_id, created_at, updated_at, batch_id, wave)
         SELECT @id, @toNode, @method, @state, 0, @requestId, @now, @now, @batchId, @wave
         WHERE NOT EXISTS (SELECT 1 FROM given_ids WHERE id = @id)`,
      ),
      insertEnvelope: db.prepare(`INSERT OR REPLACE INTO outbox_envelopes (id, envelope) VALUES (?, ?)`),
      insertBatch: db.prepare(
        `INSERT OR IGNORE INTO batches (id, waves, max_errors, wave, state, created_at, updated_at)
         VALUES (@batchId, @waves, @maxErrors, 1, 'running', @now, @now)`,
      ),
      batch: db.prepare(`SELECT id, waves, max_errors, wave, state FROM batches WHERE id = ?`),
      batchOf: db.prepare(`SELECT batch_id FROM outbox WHERE id = ?`).pluck(),
      runningBatches: db.prepare(`SELECT id FROM batches WHERE state = 'running'`).pluck(),
      members: db.prepare(
        `SELECT id, wave, state, exit_code, json_extract(result, '$.error') AS error FROM outbox WHERE batch_id = ?`,
      ),
      release: db.prepare(
        `UPDATE outbox SET state = 'queued', updated_at = @now
         WHERE batch_id = @batchId AND wave <= @wave AND state = 'pending' RETURNING id`,
      ),
      setBatch: db.prepare(`UPDATE batches SET wave = @wave, state = @state, updated_at = @now WHERE id = @batchId`),
      get: db.prepare(`SELECT ${WITH_ENVELOPE} FROM outbox WHERE id = ?`),
      keepPart: db.prepare(
        `UPDATE outbox SET result = ?, updated_at = ? WHERE id = ? AND state IN ('cancelled', 'failed', 'expired')`,
      ),
      outcome: db.prepare(`SELECT state, reason, result FROM outbox WHERE id = ?`),
      pending: db.prepare(`SELECT ${WITH_ENVELOPE} FROM outbox WHERE state IN ('queued', 'sent') ORDER BY id`),
      list: db.prepare(`SELECT * FROM outbox WHERE request_id IS NULL ORDER BY id DESC LIMIT ?`),
      unfinished: db.prepare(
        `SELECT ${WITH_ENVELOPE} FROM outbox WHERE state IN ('pending', 'queued', 'sent', 'acked', 'waiting', 'running') AND request_id IS NULL ORDER BY id`,
      ),
    };
  }

  /**
   * Store a message this node will send, queued (pending when it is in a later wave of a batch rollout,
   * whose row is created with its first message). False when that id is already stored (idempotent input).
   */
  add(message: Envelope, placement?: WavePlacement): boolean {
    return this.commits.write(() => {
      const now = Date.now();
      const info = this.stmts.insert.run({
        id: message.id,
        toNode: message.toNode,
        method: message.method,
        state: placement && placement.wave > 1 ? "pending" : "queued",
        requestId: message.requestId ?? null,
        now,
        batchId: placement?.batchId ?? null,
        wave: placement?.wave ?? null,
      });
      if (info.changes === 1) this.stmts.insertEnvelope.run(message.id, JSON.stringify(message));
      // A rollout whose messages were all stored before (the same ids handed in again) gets no row.
      if (placement && info.changes === 1) this.stmts.insertBatch.run({ ...placement, now });
      return info.changes === 1;
    });
  }

  /** Store a whole batch in one transaction (one disk sync); false for ids already stored. */
  addMany(messages: Envelope[], placements: (WavePlacement | undefined)[] = []): boolean[] {
    return this.commits.write(() =>
      this.commits.atomically(() => messages.map((message, i) => this.add(message, placements[i]))),
    );
  }

  /** A batch rollout as stored. */
  batch(batchId: string): BatchRecord | undefined {
    const row = this.stmts.batch.get(batchId) as BatchRow | undefined;
    return row && { id: row.id, waves: row.waves, maxErrors: row.max_errors, wave: row.wave, state: row.state };
  }

  /** The batch rollout a message belongs to, if any. */
  batchOf(id: string): string | undefined {
    return (this.stmts.batchOf.get(id) as string | null | undefined) ?? undefined;
  }

  /** The rollouts still running (to pick up again at start). */
  runningBatches(): string[] {
    return this.stmts.runningBatches.all() as string[];
  }

  /** Every message of a rollout, with what decides whether it ended and whether it counts as an error. */
  batchMembers(batchId: string): BatchMember[] {
    return (
      this.stmts.members.all(batchId) as {
        id: string;
        wave: number;
        state: MessageState;
        exit_code: number | null;
        error: string | null;
      }[]
    ).map((r) => ({ id: r.id, wave: r.wave, state: r.state, exitCode: r.exit_code, error: r.error }));
  }

  /** Release wave `wave` of a rollout (and any earlier one still held): pending → queued, in one transaction. */
  releaseWave(batchId: string, wave: number): OutgoingRecord[] {
    return this.commits.write(() =>
      this.commits.atomically(() => {
        const now = Date.now();
        this.stmts.setBatch.run({ batchId, wave, state: "running", now });
        const ids = this.stmts.release.all({ batchId, wave, now }) as { id: string }[];
        return ids.flatMap(({ id }) => this.get(id) ?? []);
      }),
    );
  }

  /** A rollout ends: its last wave ended (done), or its errors passed maxErrors (stopped: the rest stay pending). */
  endBatch(batchId: string, state: "stopped" | "done"): void {
    const b = this.batch(batchId);
    if (!b || b.state !== "running") return;
    this.commits.write(() => this.stmts.setBatch.run({ batchId, wave: b.wave, state, now: Date.now() }));
    for (const fn of this.batchListeners) fn(batchId);
  }

  /** Call `fn` with the id of every rollout that ends (stopped or done); returns the way to stop. */
  onBatchEnded(fn: (batchId: string) => void): () => void {
    this.batchListeners.add(fn);
    return () => this.batchListeners.delete(fn);
  }

  get(id: string): OutgoingRecord | undefined {
    const row = this.stmts.get.get(id) as OutboxRow | undefined;
    return row && toRecord(row);
  }

  /** A message's state, reason and result, without its envelope (a chunk's is large, and not needed to know its end). */
  outcome(id: string): Pick<OutgoingRecord, "state" | "reason" | "result"> | undefined {
    const row = this.stmts.outcome.get(id) as Pick<OutboxRow, "state" | "reason" | "result"> | undefined;
    return (
      row && {
        state: row.state,
        reason: row.reason,
        result: row.result === null ? null : (JSON.parse(row.result) as OutgoingRecord["result"]),
      }
    );
  }

  /** Messages still to deliver: queued, or sent without an ACK yet. */
  pending(): OutgoingRecord[] {
    return (this.stmts.pending.all() as OutboxRow[]).map(toRecord);
  }

  /** The newest operator messages (not the replies this node produced for others), `filter` narrowing them. */
  list(limit = 50, filter: MessageFilter = {}): OutgoingSummary[] {
    const where = filterSql(filter);
    if (!where.sql) return (this.stmts.list.all(limit) as SummaryRow[]).map(toSummary);
    const sql = `SELECT * FROM outbox WHERE request_id IS NULL${where.sql} ORDER BY id DESC LIMIT ?`;
    return (this.prepared(sql).all(...where.params, limit) as SummaryRow[]).map(toSummary);
  }

  /**
   * The operator messages `filter` matches that changed after `after` (their updated time, then id, so that
   * two changes in the same millisecond are both seen), oldest change first: `steward status --watch` asks
   * again from the last one it got. The (state, updated_at) index keeps it to the rows changed since.
   */
  changes(after: { updatedAt: number; id: string }, limit: number, filter: MessageFilter = {}): OutgoingSummary[] {
    const where = filterSql({ ...filter, since: Math.max(filter.since ?? after.updatedAt, after.updatedAt) });
    const sql =
      `SELECT * FROM outbox WHERE request_id IS NULL${where.sql} AND (updated_at > ? OR id > ?)` +
      ` ORDER BY updated_at, id LIMIT ?`;
    return (this.prepared(sql).all(...where.params, after.updatedAt, after.id, limit) as SummaryRow[]).map(toSummary);
  }

  private prepared(sql: string): Database.Statement {
    let stmt = this.findStmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.findStmts.set(sql, stmt);
    }
    return stmt;
  }

  /** The operator's messages not yet in a final state, oldest first (`steward cancel` with filters). */
  unfinished(): OutgoingRecord[] {
    return (this.stmts.unfinished.all() as OutboxRow[]).map(toRecord);
  }

  /** Attempt `attempt` goes out; false when the message has moved on meanwhile (cancelled): do not send it. */
  moveToSent(id: string, attempt: number): boolean {
    return this.move(id, "sent", MOVES_FROM.moveToSent, { attempt });
  }

  /** How far a message sent in chunks has got ("chunk 12/50 ACKed"), in its reason while sent; null clears it. */
  noteProgress(id: string, progress: string | null): void {
    this.move(id, "sent", ["sent"], { reason: progress });
  }

  /** The receiver ACKed it: stored there, its reply to come. */
  moveToAcked(id: string): void {
    this.move(id, "acked", MOVES_FROM.moveToAcked);
  }

  /** How a relayed message's hops went (src/delivery/relay.ts): kept in its reason while it has not ended. */
  noteHop(id: string, note: string): void {
    const state = this.get(id)?.state;
    if (state !== undefined && !FINAL_STATES.includes(state)) this.move(id, state, [state], { reason: note });
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
    if (this.move(id, "running", MOVES_FROM.moveToRunningWithPart, { result: part })) return;
    // Cancelled here (or given up on) while it still runs there: its parts keep coming until its last reply.
    // Each is kept with it, its state unchanged, so that the next part finds where the stream is (replies.ts).
    this.stmts.keepPart.run(JSON.stringify(part), Date.now(), id);
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
    state: "done" | "failed" | "expired" | "cancelled",
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
  return { ...toSummary(row), envelope: JSON.parse(row.envelope) as Envelope };
}

function toSummary(row: SummaryRow): OutgoingSummary {
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
    result: row.result === null ? null : (JSON.parse(row.result) as OutgoingRecord["result"]),
    batchId: row.batch_id ?? null,
    wave: row.wave ?? null,
  };
}
