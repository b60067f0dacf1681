/**
 * copySrc: copy a file from this node to another (ctrl's methodArgs: [srcPath, dstNode, dstPath, chunkSize,
 * maxTime, mode]). Two steps are copyDst messages, stored, signed, ACKed and retried like any message, each
 * carrying the operator's request as its grant; the chunks between them go straight from this file to the
 * destination's (src/delivery/copyChunks.ts), a window of them in flight at once:
 *
 *   status   ask the destination which chunks it holds already (a copy cut short by a restart of either end);
 *            from then on it takes this copy's chunks
 *   chunks   read the file in order (each chunk's sha256 on the way), send each chunk it lacks, a window of
 *            them in flight; a part of the result tells the origin how far the copy is, about once a second
 *   finish   the chunks' digest and the mode: the destination checks, renames into place, answers with the path
 *            (or the chunks it lacks after all: a power cut there; they are sent again)
 *
 * A chunk that gets no answer, or the answer that the copy is not open there (the destination restarted),
 * sends the status again: as a message it waits for an absent destination, and its answer says what is left
 * to send. A restart here runs the copy again from the status, so it too sends only what is missing.
 *
 * A copy given up for good (cancelled, out of time, a failure) withdraws the step it waits for and tells the
 * destination to delete what it holds (abandon, a message too): nothing waits there for a resume that will not
 * come. A graceful stop is not giving up: the copy runs again at the next start.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { errorText, MethodError } from "../errors.js";
import { newEnvelope } from "../message/envelope.js";
import { newId } from "../message/id.js";
import type { Envelope } from "../message/message.js";
import { now } from "../security/clock.js";
import {
  chunkCount,
  chunksDigest,
  copyRequest,
  copyTag,
  fromRanges,
  MAX_CHUNKS,
  MIN_CHUNK,
  type CopyStep,
} from "./copyArgs.js";
import { abortReason, type CopyLink, type MessageSender, type MethodContext, type MethodOutput } from "./method.js";

/** Bytes per chunk when the operator names none. */
export const DEFAULT_CHUNK_SIZE = 512 * 1024;
/**
 * Chunks in flight at once, at most: enough to keep a fast link and both disks busy. On a slow link fewer:
 * about IN_FLIGHT_MS of data at the rate answers come back, and at least MIN_WINDOW. More would queue on the
 * node's own connection ahead of its pings, and a link whose pings wait 15 s is taken for dead.
 */
export const WINDOW = 16;
const MIN_WINDOW = 1;
const IN_FLIGHT_MS = 1000;
const PROGRESS_MS = 1000;
/** Finishes that find chunks missing before the copy gives up. */
const MAX_FINISHES = 3;
/** Bytes hashed at a time by both of a chunk's hashes (hashBoth): well within a CPU's cache. */
const HASH_BLOCK = 32 * 1024;
/**
 * No answer for this long (or four chunks' time at the rate seen, if longer) while chunks are in flight: they
 * are taken for lost, and the copy asks the status again. A restart of the destination, or of either end's link,
 * says so at once (src/delivery/copyChunks.ts); this is for a loss nothing announces.
 */
const QUIET_MS = 30_000;
/** How long a chunk's request itself waits: only a backstop, the quiet check above ends a round first. */
const REQUEST_MS = 10 * QUIET_MS;
/** The wait before asking the status again after a round that sent nothing, doubling up to the last. */
const AGAIN_MS = [1000, 30_000];
/** How long an abandon waits for an absent destination: past the copy's own time, which may be up already. */
const ABANDON_MS = 7 * 24 * 3600 * 1000;

/** A step the destination answered with a failure: it ran there, and left nothing of the copy behind. */
class StepFailed extends MethodError {}

export async function copySrc(ctx: MethodContext): Promise<MethodOutput> {
  const copy = copyRequest(ctx.message);
  const { frame, messages, copies } = ctx;
  if (!frame || !messages || !copies)
    throw new MethodError("copySrc", "no grant to hand on: copySrc runs only as a request that arrived signed");
  const grant = Buffer.from(frame).toString("base64");
  const path = isAbsolute(copy.srcPath) ? copy.srcPath : resolve(ctx.dataFolder, copy.srcPath);
  const most = Math.floor(copies.maxChunk / MIN_CHUNK) * MIN_CHUNK;
  const chunkSize = Math.max(MIN_CHUNK, Math.min(copy.chunkSize || DEFAULT_CHUNK_SIZE, most));
  const signal =
    copy.maxTime > 0 ? AbortSignal.any([ctx.signal, AbortSignal.timeout(copy.maxTime * 1000)]) : ctx.signal;
  const seconds = copy.maxTime || (ctx.message.methodTimeout > 0 ? ctx.message.methodTimeout : 7 * 24 * 3600);
  const deliverBy = now() + seconds * 1000;

  let fh;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw new MethodError("copySrc", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let steps: Steps | undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new MethodError("copySrc", `${path} is not a file`);
    const size = st.size;
    const mode = copy.mode || (st.mode & 0o7777).toString(8).padStart(4, "0");
    const count = chunkCount(size, chunkSize);
    if (count > MAX_CHUNKS) {
      const needed = Math.ceil(size / MAX_CHUNKS / MIN_CHUNK) * MIN_CHUNK;
      throw new MethodError(
        "copySrc",
        `${path} is ${count} chunks of ${chunkSize} bytes, more than a copy takes (${MAX_CHUNKS}): give a chunkSize of at least ${needed}`,
      );
    }
    const asked = new Steps(ctx, messages, [grant, String(size), String(chunkSize)], deliverBy, signal);
    steps = asked;
    const status = async (): Promise<Set<number>> => {
      const held = fromRanges(await asked.ask("status", []));
      return new Set([...held].filter((i) => i < count));
    };
    const where = `${path} to ${copy.dstNode}:${copy.dstPath}`;
    const chunks = new Chunks(copies, copy.dstNode, copyTag(copy.id), fh, size, chunkSize, signal);
    chunks.written = await status();
    const heldAtStart = chunks.written.size;
    let told = Date.now();
    // At once, how much the destination holds already (a resumed copy), then about once a second.
    ctx.emit?.(`copying ${where}: ${progress(chunks.bytes(), size)}\n`);
    chunks.onWritten = () => {
      if (Date.now() - told < PROGRESS_MS) return;
      told = Date.now();
      ctx.emit?.(`copying ${where}: ${progress(chunks.bytes(), size)}\n`);
    };
    let wait = AGAIN_MS[0] as number;
    for (let finishes = 1; ; finishes++) {
      for (;;) {
        const before = chunks.written.size;
        const trouble = await chunks.round();
        if (trouble === undefined) break;
        // The destination restarted, the link or the broker went away: ask what it holds now, and go on.
        ctx.log.info("copy: asking the destination again", { id: copy.id, reason: trouble });
        if (chunks.written.size === before) {
          await sleep(wait, undefined, { signal }).catch(() => undefined);
          wait = Math.min(wait * 2, AGAIN_MS[1] as number);
        } else wait = AGAIN_MS[0] as number;
        if (signal.aborted) throw new MethodError("copySrc", `${where}: ${abortReason(signal)}`);
        chunks.written = await status();
      }
      // A chunk is compared with the first read of it only when read again: a change elsewhere shows here.
      const after = await fh.stat();
      if (after.size !== size || after.mtimeMs !== st.mtimeMs)
        throw new MethodError("copySrc", `${path} changed during the copy: send the copy again`);
      ctx.log.info("copy: chunks sent", { id: copy.id, chunks: count, sent: chunks.sent, held: heldAtStart });
      const answer = await asked.ask("finish", [chunks.digest(), mode]);
      if (!answer.startsWith("missing ")) {
        // Its chunks are the destination's (the digest agreed): the sha256 of the whole file read here is the copy's.
        const sum = chunks.wholeSum();
        return { exitCode: 0, data: `copied ${path} to ${copy.dstNode}:${answer}: ${size} bytes, sha256 ${sum}\n` };
      }
      // Chunks the destination lost after it answered them (a power cut): sent again, a few times at most.
      if (finishes >= MAX_FINISHES)
        throw new MethodError("copySrc", `${copy.dstNode} keeps losing chunks of ${copy.dstPath}: ${answer}`);
      ctx.log.warn("copy: the destination lacks chunks at the finish", { id: copy.id, reason: answer });
      chunks.written = await status();
    }
  } catch (err) {
    // A graceful stop is not giving up: the copy runs again at the next start, from what the destination holds.
    if (!ctx.stopping?.aborted && !(err instanceof StepFailed)) await steps?.giveUp();
    throw err;
  } finally {
    await fh.close();
  }
}

/** The copyDst messages of one copy: its steps, and the abandon that gives it up. */
class Steps {
  /** A step was sent: the copy may be open on the destination, with files there. */
  private sent = false;
  /** The step waited for now, withdrawn when the copy is given up. */
  private waiting: string | undefined;

  constructor(
    private readonly ctx: MethodContext,
    private readonly messages: MessageSender,
    /** grant, size, chunkSize: the arguments every step starts with (copyArgs.ts). */
    private readonly head: string[],
    /** Steps wait for an absent destination until the copy's time is up, never failing for spent retries. */
    private readonly deliverBy: number,
    private readonly signal: AbortSignal,
  ) {}

  /** Send a step and wait for its reply: its data, or the reason it failed. */
  async ask(name: CopyStep, args: string[]): Promise<string> {
    const message = this.message(name, args, this.deliverBy);
    this.sent = true;
    this.waiting = message.id;
    await this.messages.send(message);
    const out = await this.messages.outcome(message.id, this.signal);
    this.waiting = undefined;
    if (out.state !== "done" || out.result?.error) {
      const why = `${name} at ${message.toNode}: ${out.result?.error ?? out.reason ?? out.state}`;
      // With a result the destination ran the step, and cleans up after a failed one itself; without, it may not have.
      throw out.result ? new StepFailed("copySrc", why) : new MethodError("copySrc", why);
    }
    return out.result?.data ?? "";
  }

  /** The copy is over without its file: the step waited for is withdrawn, and the destination deletes what it holds. */
  async giveUp(): Promise<void> {
    if (!this.sent) return;
    const { ctx } = this;
    const copy = ctx.message.id;
    if (this.waiting) ctx.withdraw?.(this.waiting, `${ctx.nodeName} (copy ${copy} given up)`);
    // Its own time, past the copy's (which may be what ran out).
    await this.messages.send(this.message("abandon", [], now() + ABANDON_MS)).catch((err: unknown) => {
      ctx.log.warn("copy: cannot tell the destination to delete what it holds", { id: copy, reason: errorText(err) });
    });
  }

  private message(name: CopyStep, args: string[], deliverBy: number): Envelope {
    return newEnvelope({
      id: newId(),
      toNode: copyRequest(this.ctx.message).dstNode,
      fromNode: this.ctx.nodeName,
      method: "copyDst",
      methodArgs: [name, ...this.head, ...args],
      methodTimeout: 120,
      ACKTimeout: 10,
      retries: 10,
      retryWait: 1,
      replyACKTimeout: 10,
      replyRetries: 10,
      deliverBy,
      deliverByGiven: true,
    });
  }
}

/** The chunks of one copy: which the destination has, and rounds that send the rest. */
class Chunks {
  /** The chunks the destination has (its status said so, or it answered written). */
  written = new Set<number>();
  /** Chunks sent by this run. */
  sent = 0;
  onWritten: () => void = () => undefined;
  private readonly count: number;
  /** Each chunk's sha256 as the first round read it: a chunk read again later must match. */
  private readonly sums: string[] = [];
  /** Of the whole file, as the first round reads it. */
  private readonly whole = createHash("sha256");
  private wholeHex: string | undefined;
  /** Bytes the destination wrote in this round, since it started: how many chunks to keep in flight. */
  private started = 0;
  private writtenHere = 0;

  constructor(
    private readonly link: CopyLink,
    private readonly dst: string,
    private readonly tag: string,
    private readonly fh: Awaited<ReturnType<typeof open>>,
    private readonly size: number,
    private readonly chunkSize: number,
    private readonly signal: AbortSignal,
  ) {
    this.count = chunkCount(size, chunkSize);
  }

  bytes(): number {
    let n = 0;
    for (const i of this.written) n += this.length(i);
    return n;
  }

  /** What the destination's chunks must add up to (chunksDigest()), from the first round's reads. */
  digest(): string {
    if (this.sums.length < this.count) throw new Error("the whole file was not read yet");
    return chunksDigest(this.sums);
  }

  wholeSum(): string {
    this.wholeHex ??= this.whole.digest("hex");
    return this.wholeHex;
  }

  /**
   * Send every chunk not written yet, WINDOW at a time; undefined when all are written, else why this round
   * stopped sending (no answer, the copy not open there). It does not wait out the answers still to come then:
   * a destination that went away gives none. The first round reads every chunk, for its sha256 (those the
   * destination holds too), and reads on to the end of the file after it stopped sending.
   */
  async round(): Promise<string | undefined> {
    const inFlight = new Set<Promise<void>>();
    let trouble: string | undefined;
    let failure: Error | undefined;
    let stop = (): void => undefined;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    const first = this.sums.length < this.count;
    // The rate is this round's: one measured across a long absence of the destination would stay low after it.
    this.started = Date.now();
    this.writtenHere = 0;
    let answered = Date.now();
    // Cancelled or out of time: the round ends now, not when the chunks in flight are answered or given up. As
    // trouble, so that the wait for room in the window ends too (stopped alone resolves at once, every time).
    const aborted = (): void => {
      trouble ??= abortReason(this.signal);
      stop();
    };
    this.signal.addEventListener("abort", aborted, { once: true });
    const quiet = setInterval(() => {
      if (inFlight.size === 0 || Date.now() - answered < this.quietMs()) return;
      trouble ??= `no answer from ${this.dst} for ${Math.round((Date.now() - answered) / 1000)} s`;
      stop();
    }, 1000);
    try {
      for (let index = 0; index < this.count; index++) {
        const wanted = !this.written.has(index) && trouble === undefined && failure === undefined;
        if (!wanted && !first) continue;
        if (this.signal.aborted) break;
        const length = this.length(index);
        const data = this.link.chunkBuffer(length);
        const { bytesRead } = await this.fh.read(data, 0, length, index * this.chunkSize);
        const sum = first ? this.hashBoth(data) : createHash("sha256").update(data).digest("hex");
        if (first) this.sums[index] = sum;
        if (bytesRead !== length || sum !== this.sums[index]) {
          failure ??= new MethodError("copySrc", "the file changed during the copy: send the copy again");
          break;
        }
        if (!wanted) continue;
        while (inFlight.size >= this.window() && trouble === undefined && failure === undefined)
          await Promise.race([...inFlight, stopped]);
        if (trouble !== undefined || failure !== undefined) continue;
        this.sent++;
        const chunk = { copy: this.tag, index, sha256: sum, data };
        const task: Promise<void> = this.link.send(this.dst, chunk, REQUEST_MS).then(
          (answer) => {
            answered = Date.now();
            if ("written" in answer) {
              this.written.add(index);
              this.writtenHere += length;
              this.onWritten();
              return;
            }
            if ("unknown" in answer) trouble ??= answer.unknown;
            else failure ??= new MethodError("copySrc", `chunk ${index} at ${this.dst}: ${answer.error}`);
            stop();
          },
          (err: unknown) => {
            trouble ??= `chunk ${index}: ${(err as Error).message}`;
            stop();
          },
        );
        inFlight.add(task);
        void task.finally(() => inFlight.delete(task));
      }
      await Promise.race([Promise.all(inFlight), stopped]);
    } finally {
      clearInterval(quiet);
      this.signal.removeEventListener("abort", aborted);
    }
    if (this.signal.aborted) throw new MethodError("copySrc", abortReason(this.signal));
    if (failure !== undefined) throw failure;
    if (trouble === undefined && this.written.size < this.count) trouble = "chunks missing after a round";
    return trouble;
  }

  /**
   * The chunk's sha256, and the whole file's taken on: a block of each in turn, so that the second hash reads
   * bytes still in the CPU's cache rather than the chunk from memory again.
   */
  private hashBoth(data: Buffer): string {
    const chunk = createHash("sha256");
    for (let at = 0; at < data.length; at += HASH_BLOCK) {
      const block = data.subarray(at, at + HASH_BLOCK);
      chunk.update(block);
      this.whole.update(block);
    }
    return chunk.digest("hex");
  }

  /** Bytes a millisecond the destination has written for this run; undefined before its first answer. */
  private rate(): number | undefined {
    const elapsed = Date.now() - this.started;
    return this.writtenHere > 0 && elapsed > 0 ? this.writtenHere / elapsed : undefined;
  }

  private window(): number {
    const rate = this.rate();
    if (rate === undefined) return MIN_WINDOW;
    return Math.max(MIN_WINDOW, Math.min(WINDOW, Math.ceil((rate * IN_FLIGHT_MS) / this.chunkSize)));
  }

  private quietMs(): number {
    const rate = this.rate();
    return rate === undefined ? QUIET_MS : Math.max(QUIET_MS, Math.ceil((4 * this.chunkSize) / rate));
  }

  private length(index: number): number {
    return Math.max(0, Math.min(this.chunkSize, this.size - index * this.chunkSize));
  }
}

function progress(copied: number, size: number): string {
  const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
  return `${mib(copied)} of ${mib(size)} MiB (${size === 0 ? 100 : Math.floor((copied / size) * 100)}%)`;
}
