/**
 * The node's local store (SQLite, WAL), one file per node. The node where a
 * message originated owns its state; the broker keeps none
 * (docs/ARCHITECTURE.md).
 *
 *   store.outgoing  — the `outbox` table: messages this node sends (src/store/outgoing.ts)
 *   store.incoming  — the `inbox` table: messages this node received (src/store/incoming.ts)
 *   store.nodes     — the `nodes` table: last hello per node (src/store/nodes.ts)
 *   store.keys      — central's admitted keys and its bundle's version and rules (src/store/keys.ts)
 *   store.prune()   — what is deleted, and when (src/store/retention.ts)
 *
 * Every write joins the turn's transaction and `durable()` waits for the disk
 * (src/store/groupCommit.ts); the schema is upgraded on open
 * (src/store/migrations.ts). The moves that must happen together across
 * tables are verbs here, each one transaction.
 */
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { StoreError } from "../errors.js";
import type { Envelope } from "../message/message.js";
import { GroupCommit } from "./groupCommit.js";
import { IncomingTable } from "./incoming.js";
import { KeysTable } from "./keys.js";
import { migrate } from "./migrations.js";
import { NodesTable } from "./nodes.js";
import { OutgoingTable } from "./outgoing.js";
import { type Pruned, Retention } from "./retention.js";

export type { CancelOutcome, IncomingRecord } from "./incoming.js";
export type { KeyRecord, KeyState } from "./keys.js";
export type { NodeRecord } from "./nodes.js";
export type { BatchRecord, BatchState, OutgoingRecord, OutgoingSummary, WavePlacement } from "./outgoing.js";
export type { Pruned } from "./retention.js";

export class Store {
  readonly path: string;
  readonly outgoing: OutgoingTable;
  readonly incoming: IncomingTable;
  readonly nodes: NodesTable;
  readonly keys: KeysTable;
  private readonly retention: Retention;
  private readonly db: Database.Database;
  private readonly commits: GroupCommit;

  constructor(folder: string, nodeName: string) {
    this.path = join(folder, `${nodeName}.sqlite`);
    let db: Database.Database | undefined;
    try {
      mkdirSync(folder, { recursive: true });
      db = new Database(this.path);
      db.pragma("journal_mode = WAL");
      // NORMAL: commits reach the WAL file at once but are synced by durable(), many at a time (see groupCommit.ts).
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      // A checkpoint writes the WAL back and starts it over, but leaves the file at its largest; cut it back.
      db.pragma(`journal_size_limit = ${8 * 1024 * 1024}`);
      migrate(db, this.path);
      // The schema is in place, so the WAL exists; it stays (same inode) until our connection closes.
      this.commits = new GroupCommit(db, this.path);
      this.db = db;
    } catch (err) {
      if (db?.open) db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError(
        this.path,
        `cannot open: ${(err as Error).message}; check that databaseFolder is a writable folder with free space`,
        err,
      );
    }
    this.outgoing = new OutgoingTable(this.db, this.commits);
    this.incoming = new IncomingTable(this.db, this.commits);
    this.nodes = new NodesTable(this.db, this.commits);
    this.keys = new KeysTable(this.db, this.commits);
    this.retention = new Retention(this.db, this.commits);
  }

  /** Delete finished messages older than `retentionMs`, and what else has no use any more (see retention.ts). */
  prune(retentionMs: number): Promise<Pruned> {
    return this.retention.prune(retentionMs);
  }

  /** Disk syncs done so far: with many messages in flight, far fewer than writes. */
  get syncs(): number {
    return this.commits.syncs;
  }

  /**
   * A request ran here: it moves to done and, in the same transaction, its reply is queued,
   * so that a crash leaves either "run again" or "reply stored", never "ran, reply lost".
   */
  moveRunToDone(message: Envelope, reply: Envelope | undefined): void {
    this.inTransaction(message, () => {
      if (reply) this.outgoing.add(reply);
    });
  }

  /** The last reply to one of this node's requests ran here: it moves to done and the request to its final state. */
  moveRunToDoneAndRequestToFinal(
    reply: Envelope,
    requestId: string,
    state: "done" | "failed" | "expired" | "cancelled",
    fields: { reason: string | null; exitCode: number | null; result: unknown },
  ): void {
    this.inTransaction(reply, () => {
      this.outgoing.moveToFinalByReply(requestId, state, fields);
    });
  }

  /** A part of a streamed or scheduled result ran here: it moves to done, and the request runs on with that part. */
  moveRunToDoneAndRequestToRunning(reply: Envelope, requestId: string, part: unknown): void {
    this.inTransaction(reply, () => this.outgoing.moveToRunningWithPart(requestId, part));
  }

  /**
   * The operator withdraws message `id`: it moves to cancelled and, in the same transaction, `cancel` (the
   * signed cancel for its receiver, when it may have got there) is queued. False when it had ended already.
   */
  moveToCancelled(id: string, reason: string, cancel: Envelope | undefined): boolean {
    return this.commits.write(() =>
      this.commits.atomically(() => {
        if (!this.outgoing.moveToFinal(id, "cancelled", { reason })) return false;
        if (cancel) this.outgoing.add(cancel);
        return true;
      }),
    );
  }

  /** Resolves once every write made before the call is on disk (see groupCommit.ts). */
  durable(): Promise<void> {
    return this.commits.durable();
  }

  close(): void {
    this.commits.close();
    if (this.db.open) this.db.close();
  }

  /** The received message moves to done together with `alongside`, all or nothing. */
  private inTransaction(message: Envelope, alongside: () => void): void {
    this.commits.write(() =>
      this.commits.atomically(() => {
        this.incoming.moveToDone(message);
        alongside();
      }),
    );
  }
}
