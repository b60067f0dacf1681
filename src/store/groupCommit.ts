/**
 * Group commit: the writes of one turn of the event loop share one SQLite
 * transaction, and the waiters for the disk share one fdatasync.
 *
 *   idle ──first write of a turn: BEGIN──▶ open ──setImmediate (or commit()): COMMIT──▶ committed
 *     ▲                                      │ COMMIT fails, or SQLite undid it (SQLITE_FULL/IOERR)
 *     │                                      ▼
 *     └──────────────── lost: ROLLBACK, every waiter for those writes is rejected (StoreError.lost)
 *   committed ──durable(): one fdatasync of the WAL, off the event loop──▶ synced (waiters resolve)
 *
 * The commit (synchronous=NORMAL) puts the pages in the WAL file, in the
 * kernel's hands, without a disk sync. `durable()` resolves once every write
 * made before it is committed and on disk: one fdatasync covers every commit
 * before it, so two hundred messages in flight share a commit and a disk sync
 * instead of paying for one each. Whoever is about to tell the world something
 * is stored — an input answering "accepted", the inbox ACKing, a run starting,
 * a reply going out or being ACKed (docs/ARCHITECTURE.md) — awaits `durable()`
 * first. Progress-only writes (sent, acked, running) need no wait: lost in a
 * crash they move a state back, and the re-send is ACKed without running
 * again. A write is seen at once by this node's own reads (the same
 * connection), by other processes once committed.
 *
 * Why this is as safe as synchronous=FULL: in WAL mode SQLite writes the
 * database file only in a checkpoint, and a checkpoint syncs the WAL before
 * and the database after it; so the only commits not yet on disk are the WAL
 * frames written since, and fsync flushes a file's dirty pages whichever
 * descriptor wrote them (Linux: per inode). A frame torn by a power cut before
 * its sync fails its checksum and is dropped with its transaction, which no
 * one was told about.
 */
import type Database from "better-sqlite3";
import { closeSync, fdatasync, openSync } from "node:fs";
import { StoreError } from "../errors.js";

interface SyncWaiter {
  upTo: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class GroupCommit {
  /** Run `fn` all or nothing (a savepoint inside the turn's transaction). */
  readonly atomically: <T>(fn: () => T) => T;
  private readonly begin: Database.Statement;
  private readonly commitStmt: Database.Statement;
  /** The WAL file, opened for fdatasync (see durable()). */
  private walFd: number | undefined;
  /** Writes made so far; how many of them are committed; how many of them the last finished sync covered. */
  private written = 0;
  private committed = 0;
  private synced = 0;
  private syncing = false;
  private syncWaiters: SyncWaiter[] = [];
  /** Disk syncs done so far: with many messages in flight, far fewer than writes. */
  syncs = 0;

  /** `db` is in WAL mode and its WAL file exists (it stays, same inode, until the connection closes). */
  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
  ) {
    // One wrapper, made once: better-sqlite3 builds a new one per db.transaction() call (a profile's 6 %).
    const atomic = db.transaction((fn: () => unknown) => fn());
    this.atomically = <T>(fn: () => T): T => atomic(fn) as T;
    // Prepared once: exec() would parse them again at every turn.
    this.begin = db.prepare("BEGIN");
    this.commitStmt = db.prepare("COMMIT");
    this.walFd = openSync(`${path}-wal`, "r");
  }

  /** Make a write in this turn's transaction (opened here when it is the turn's first). */
  write<T>(fn: () => T): T {
    try {
      if (!this.db.inTransaction) {
        this.begin.run();
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

  /**
   * Resolves once every write made before the call is on disk. Callers waiting
   * at the same time share one fdatasync; writes made while a sync runs wait
   * for the next one.
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
      this.commitStmt.run();
      this.committed = this.written;
    } catch (err) {
      this.lost(err);
      return;
    }
    this.syncNext();
  }

  /** Commit what is open, and fail the waits no sync can confirm any more. */
  close(): void {
    this.commit();
    if (this.walFd !== undefined) {
      const fd = this.walFd;
      this.walFd = undefined;
      // A sync still running gets the descriptor closed when it ends (a number reused meanwhile would be synced instead).
      if (!this.syncing) closeSync(fd);
    }
    this.settleWaiters(new StoreError(this.path, "store closed before the write was confirmed on disk"));
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
}
