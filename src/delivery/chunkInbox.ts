/**
 * The receiving side of chunks (chunks.ts). A chunk arrives on <thisNode>._chunk.<sender> and goes:
 *
 *   verify     its frame signed by the sender the subject names               ── else dropped, unanswered
 *   check      its head well formed, its bytes where the head says, the method ── else dropped (counted)
 *              served here; the whole within maxMessageSize, not past deliverBy ── else refused (signed)
 *   dedupe     the message already stored here: answered with its ACK
 *   bound      a sender has at most MAX_SETS_PER_SENDER incomplete messages here, and all senders' together
 *              claim at most DISK_BUDGET_SETS × maxMessageSize (each counted at its full size)  ── else busy
 *   store      written to <databaseFolder>/chunks/<sender>/<set>/<seq> (synced, private), then ACKed
 *   complete   the last chunk: at most MAX_ASSEMBLING messages are put back together at once (each in a buffer
 *              of its whole size) ── else that chunk is answered busy, and its sender sends it again later.
 *              The whole is read back into one buffer, its sha256 checked, and it goes to the
 *              inbox exactly as a message that came in one piece (its signature checked for its method's
 *              subject); the inbox's answer (ACK, refusal, busy) answers that last chunk. Then the set is deleted,
 *              unless the answer was busy (the sender sends a chunk again later, which completes it again).
 *
 * A set that does not complete is deleted after its deliverBy, or when no chunk came for IDLE_MS. A set of
 * another version of the same message (another sha256) replaces the one there.
 */
import type { Msg } from "@nats-io/transport-node";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import { CATALOG, type MethodName } from "../message/methods.js";
import { badTokenReason } from "../message/names.js";
import { now } from "../security/clock.js";
import { readHeader } from "../security/frame.js";
import type { Store } from "../store/store.js";
import { type ChunkAck, type ChunkHead, FRAME_SLACK, MIN_CHUNK } from "./chunks.js";
import type { Busy } from "./outbox.js";
import { chunkSubscription, methodSubject } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Ack, Wire } from "./wire.js";

/** Incomplete messages one sender may have here at once: each up to maxMessageSize on disk. */
export const MAX_SETS_PER_SENDER = 4;
/** A set that got no chunk for this long is given up (its sender re-sends all of it if it still wants to). */
export const IDLE_MS = 60 * 60 * 1000;
/** How often sets are checked for pruning. */
const PRUNE_EVERY_MS = 60_000;
/** What a sender over MAX_SETS_PER_SENDER or the disk budget is told to wait. */
const BUSY_MS = 5000;
/** Incomplete messages of all senders together claim at most this many times maxMessageSize of disk. */
export const DISK_BUDGET_SETS = 4;
/** Messages put back together at once, each in a buffer of its whole size: the memory chunks may take. */
export const MAX_ASSEMBLING = 2;
/** What the sender of a last chunk is told to wait while MAX_ASSEMBLING others are being put together. */
const ASSEMBLY_BUSY_MS = 1000;

export interface ChunkInboxOptions {
  nodeName: string;
  /** Where incomplete sets are kept (under the database folder). */
  folder: string;
  /** The largest message taken (maxMessageSize). */
  maxMessageSize: number;
  store: Store;
  transport: Transport;
  wire: Wire;
  log: Logger;
  /** Is a subscriber for `method` running here? Chunks for a method not served are dropped. */
  serves(method: MethodName): boolean;
  /** Hand a reassembled message to the inbox, as if it had come in one piece on `msg.subject`. */
  deliver(msg: Msg, method: MethodName): void;
}

interface ChunkSet {
  from: string;
  dir: string;
  head: Omit<ChunkHead, "seq">;
  have: Set<number>;
  /** The folder and its head on disk: chunks are written after it. */
  ready: Promise<void>;
  touched: number;
  assembling: boolean;
}

export class ChunkInbox {
  private sets = new Map<string, ChunkSet>();
  /** Sets being put back together now (at most MAX_ASSEMBLING). */
  private assemblingNow = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ChunkInboxOptions) {}

  /** Load the sets left by the last run, subscribe, and prune now and then. */
  start(): void {
    this.load();
    this.opts.transport.subscribe(chunkSubscription(this.opts.nodeName), (msg) => {
      this.receive(msg).catch((err) =>
        this.opts.log.error("could not handle a chunk", { subject: msg.subject, reason: errorText(err) }),
      );
    });
    this.timer = setInterval(() => this.prune(), PRUNE_EVERY_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Delete the sets past their deliverBy or idle for IDLE_MS. */
  prune(): number {
    let n = 0;
    for (const set of [...this.sets.values()]) {
      if (set.assembling) continue;
      if (now() > set.head.deliverBy || Date.now() - set.touched > IDLE_MS) {
        this.opts.log.info("an incomplete chunked message is given up", {
          id: set.head.chunkOf,
          fromNode: set.from,
          chunks: `${set.have.size}/${set.head.count}`,
        });
        this.remove(set);
        n++;
      }
    }
    return n;
  }

  /**
   * `from` cancelled its message `id` before it was whole here: its chunks are deleted now rather than after
   * IDLE_MS, and no longer count against that sender's incomplete messages. One being put together now finds
   * the cancel's tombstone in the inbox instead (ACKed, not run).
   */
  forget(from: string, id: string): void {
    const set = this.sets.get(`${from}\0${id}`);
    if (!set || set.assembling) return;
    this.opts.log.info("a cancelled chunked message's chunks are deleted", {
      id,
      fromNode: from,
      chunks: `${set.have.size}/${set.head.count}`,
    });
    this.remove(set);
  }

  private async receive(msg: Msg): Promise<void> {
    const { wire, store, nodeName } = this.opts;
    const opened = wire.openBody(msg.subject, msg.data);
    if (!opened) return;
    const { signer, body } = opened;
    const nl = body.indexOf(10);
    let head: Partial<ChunkHead> | null = null;
    try {
      head = nl < 0 ? null : (JSON.parse(Buffer.from(body.subarray(0, nl)).toString("utf8")) as Partial<ChunkHead>);
    } catch {
      head = null;
    }
    const data = body.subarray(nl + 1);
    const problem = headProblem(head, data.length);
    if (problem || !head) {
      wire.drop(msg.subject, signer, "bad chunk", problem ?? "no head");
      return;
    }
    const h = head as ChunkHead;
    const method = h.method as MethodName;
    if (!this.opts.serves(method)) {
      wire.drop(msg.subject, signer, "bad chunk", `a chunk for ${method}, which has no subscriber on ${nodeName}`);
      return;
    }
    const most = this.opts.maxMessageSize + FRAME_SLACK;
    if (h.size > most) {
      this.refuse(msg, signer, h, `message is ${h.size} bytes, more than ${nodeName}'s maxMessageSize (${most})`);
      return;
    }
    if (now() > h.deliverBy) {
      this.refuse(msg, signer, h, `expired: not delivered by ${new Date(h.deliverBy).toISOString()}`);
      return;
    }
    // Delivered already (the answer to its last chunk was lost), or cancelled before it came: ACK it again, as a
    // re-sent message is; its chunks are not kept.
    if (store.incoming.seen(signer, h.chunkOf)) {
      await store.durable();
      this.answer(msg, { ack: h.chunkOf });
      return;
    }

    const key = `${signer}\0${h.chunkOf}`;
    let set = this.sets.get(key);
    if (set && !sameSet(set.head, h)) {
      // Another version of that message (signed again after a restart of an older sender): it replaces this one.
      this.remove(set);
      set = undefined;
    }
    if (!set) {
      const mine = [...this.sets.values()].filter((s) => s.from === signer).length;
      if (mine >= MAX_SETS_PER_SENDER) {
        this.opts.log.debug("busy: a sender has too many incomplete chunked messages here", { signer });
        this.answer(msg, { busy: BUSY_MS, id: h.chunkOf });
        return;
      }
      // One set is always taken, however large, so that a message up to maxMessageSize can come in.
      const claimed = [...this.sets.values()].reduce((sum, s) => sum + s.head.size, 0);
      if (claimed > 0 && claimed + h.size > DISK_BUDGET_SETS * this.opts.maxMessageSize) {
        this.opts.log.debug("busy: incomplete chunked messages take all the disk they may", { signer, claimed });
        this.answer(msg, { busy: BUSY_MS, id: h.chunkOf });
        return;
      }
      set = this.create(signer, h);
    }
    set.touched = Date.now();
    if (!set.have.has(h.seq)) {
      const s = set;
      await s.ready;
      const tmp = join(s.dir, `${h.seq}.${randomBytes(4).toString("hex")}.tmp`);
      try {
        const fh = await open(tmp, "w", 0o600);
        try {
          await fh.writeFile(data);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        await rename(tmp, join(s.dir, String(h.seq)));
      } catch (err) {
        // Replaced or pruned meanwhile, or the disk is full: not ACKed, so the sender sends it again.
        if (this.sets.get(key) === s)
          this.opts.log.warn("cannot store a chunk; not ACKing it", { id: h.chunkOf, reason: errorText(err) });
        return;
      }
      if (this.sets.get(key) !== s) return;
      s.have.add(h.seq);
    }
    if (set.have.size < h.count) {
      this.answer(msg, { chunk: h.chunkOf, seq: h.seq } satisfies ChunkAck);
      return;
    }
    await this.complete(set, msg, method);
  }

  /** Every chunk is here: read the whole back, check it, and hand it to the inbox; its answer answers `msg`. */
  private async complete(set: ChunkSet, msg: Msg, method: MethodName): Promise<void> {
    // Another chunk completed it a moment ago: its answer is the one the sender waits for.
    if (set.assembling) return;
    if (this.assemblingNow >= MAX_ASSEMBLING) {
      // Its chunk is on disk but not ACKed: the sender sends it again after the wait, which completes the set then.
      this.opts.log.debug("busy: other chunked messages are being put back together", { id: set.head.chunkOf });
      this.answer(msg, { busy: ASSEMBLY_BUSY_MS, id: set.head.chunkOf });
      return;
    }
    set.assembling = true;
    this.assemblingNow++;
    try {
      await this.assemble(set, msg, method);
    } finally {
      this.assemblingNow--;
    }
  }

  private async assemble(set: ChunkSet, msg: Msg, method: MethodName): Promise<void> {
    const { head } = set;
    let whole: Buffer;
    try {
      whole = Buffer.allocUnsafe(head.size);
      const hash = createHash("sha256");
      for (let seq = 0; seq < head.count; seq++) {
        const length = chunkLength(head, seq);
        const fh = await open(join(set.dir, String(seq)), "r");
        try {
          const { bytesRead } = await fh.read(whole, seq * head.chunkSize, length, 0);
          if (bytesRead !== length) throw new Error(`chunk ${seq} is ${bytesRead} bytes, expected ${length}`);
        } finally {
          await fh.close();
        }
        hash.update(whole.subarray(seq * head.chunkSize, seq * head.chunkSize + length));
      }
      if (hash.digest("hex") !== head.sha256) {
        this.opts.wire.drop(
          msg.subject,
          set.from,
          "bad chunk",
          `the chunks of ${head.chunkOf} do not match its sha256`,
        );
        this.remove(set);
        return;
      }
    } catch (err) {
      this.opts.log.error("cannot read a chunked message back; dropping its chunks", {
        id: head.chunkOf,
        reason: errorText(err),
      });
      this.remove(set);
      return;
    }
    let busy = false;
    const inner = {
      subject: methodSubject(this.opts.nodeName, method, set.from),
      data: whole,
      reply: msg.reply,
      respond: (bytes: Uint8Array) => {
        busy ||= isBusy(bytes);
        return msg.respond(bytes);
      },
    } as unknown as Msg;
    this.opts.deliver(inner, method);
    // Stored (or refused, or dropped as unverifiable): the chunks are done with. Busy: kept, to complete again,
    // unless a cancel came meanwhile (forget() leaves a set being put together alone): nothing completes it then.
    if (busy && !this.opts.store.incoming.seen(set.from, head.chunkOf)) set.assembling = false;
    else this.remove(set);
  }

  private create(from: string, h: ChunkHead): ChunkSet {
    const { seq: _seq, ...head } = h;
    // A folder of its own for each set: one that replaces another of the same id never shares (nor loses) it.
    const name = createHash("sha256").update(h.chunkOf).digest("hex").slice(0, 32);
    const dir = join(this.opts.folder, from, `${name}-${randomBytes(8).toString("hex")}`);
    const set: ChunkSet = {
      from,
      dir,
      head,
      have: new Set(),
      touched: Date.now(),
      assembling: false,
      ready: (async () => {
        // Modes given, not left to the umask: the runner briefly sets a looser one to start commands.
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await writeFile(join(dir, "head.json"), JSON.stringify(head), { mode: 0o600 });
      })(),
    };
    set.ready.catch(() => undefined);
    this.sets.set(`${from}\0${h.chunkOf}`, set);
    return set;
  }

  private remove(set: ChunkSet): void {
    const key = `${set.from}\0${set.head.chunkOf}`;
    if (this.sets.get(key) === set) this.sets.delete(key);
    void set.ready
      .catch(() => undefined)
      .then(() => rm(set.dir, { recursive: true, force: true }))
      .catch((err) => this.opts.log.warn("cannot delete chunks", { dir: set.dir, reason: errorText(err) }));
  }

  /** The sets the last run left: kept, so that a sender resuming sends only what is missing. */
  private load(): void {
    const { folder, log } = this.opts;
    if (!existsSync(folder)) return;
    for (const from of readdirSync(folder)) {
      for (const name of readdirSync(join(folder, from))) {
        const dir = join(folder, from, name);
        try {
          const head = JSON.parse(readFileSync(join(dir, "head.json"), "utf8")) as Omit<ChunkHead, "seq">;
          const have = new Set(
            readdirSync(dir)
              .filter((f) => /^\d+$/.test(f))
              .map(Number)
              .filter((seq) => seq < head.count),
          );
          const set: ChunkSet = {
            from,
            dir,
            head,
            have,
            ready: Promise.resolve(),
            touched: Date.now(),
            assembling: false,
          };
          this.sets.set(`${from}\0${head.chunkOf}`, set);
        } catch (err) {
          log.warn("dropping unreadable chunks", { dir, reason: errorText(err) });
          void rm(dir, { recursive: true, force: true }).catch(() => undefined);
        }
      }
    }
    this.prune();
  }

  private answer(msg: Msg, value: Ack | Busy | ChunkAck): void {
    if (msg.reply) msg.respond(this.opts.wire.seal(msg.reply, value));
  }

  private refuse(msg: Msg, signer: string, h: ChunkHead, reason: string): void {
    this.opts.log.warn("refused a chunked message", { id: h.chunkOf, signer, reason });
    this.answer(msg, { refused: reason, id: h.chunkOf });
  }
}

/** Bytes of chunk `seq` of a set. */
function chunkLength(head: Omit<ChunkHead, "seq">, seq: number): number {
  return Math.min(head.chunkSize, head.size - seq * head.chunkSize);
}

function sameSet(a: Omit<ChunkHead, "seq">, b: ChunkHead): boolean {
  return (
    a.sha256 === b.sha256 &&
    a.size === b.size &&
    a.count === b.count &&
    a.chunkSize === b.chunkSize &&
    a.method === b.method &&
    a.deliverBy === b.deliverBy
  );
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/** Why a chunk's head (with `length` bytes after it) is not one a sender could have made, if it is not. */
function headProblem(h: Partial<ChunkHead> | null, length: number): string | undefined {
  if (h === null || typeof h !== "object") return "no JSON head";
  if (typeof h.chunkOf !== "string" || h.chunkOf === "" || h.chunkOf.length > 200) return "chunkOf is not an id";
  if (typeof h.method !== "string" || !Object.hasOwn(CATALOG, h.method) || badTokenReason(h.method))
    return "method is not one of this version's";
  if (typeof h.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(h.sha256)) return "sha256 is not 64 hex digits";
  if (!isInt(h.size) || !isInt(h.chunkSize) || !isInt(h.count) || !isInt(h.seq) || !isInt(h.deliverBy))
    return "seq, count, size, chunkSize and deliverBy must be integers";
  if (h.size < 1 || h.chunkSize < 1) return "size and chunkSize must be positive";
  if (h.chunkSize < MIN_CHUNK && h.size > h.chunkSize) return `chunkSize below ${MIN_CHUNK}`;
  if (h.count !== Math.ceil(h.size / h.chunkSize)) return "count does not match size and chunkSize";
  if (h.seq < 0 || h.seq >= h.count) return "seq out of range";
  if (length !== Math.min(h.chunkSize, h.size - h.seq * h.chunkSize))
    return `chunk ${h.seq} has ${length} bytes, its head says otherwise`;
  return undefined;
}

/** Is this answer (a frame this node signed) a busy? Read without verifying: it is our own. */
function isBusy(bytes: Uint8Array): boolean {
  try {
    const value = JSON.parse(Buffer.from(readHeader(bytes)?.body ?? []).toString("utf8")) as Partial<Busy> | null;
    return typeof value?.busy === "number";
  } catch {
    return false;
  }
}
