/**
 * The origin's side of a reply: a reply to one of this node's requests has
 * come back. It is let in only when it answers a request this node sent to
 * the reply's sender, asking for that reply method; once its reply method has
 * run here, the request moves on, in the same transaction as the reply's run:
 *
 *   a part (result.partial) ──▶ request running, keeping the latest part
 *   the last reply          ──▶ request done, or failed (the method failed there, or the reply method here),
 *                               or expired (not run there: its runBy had passed), or cancelled
 *                               (result.cancelled: the receiver did not run it, or ended its run)
 *
 * A request the operator cancelled here (steward cancel) keeps `cancelled` and gets the reply's result,
 * unless the reply says it had finished there before the cancel arrived: then that is the truth, and the
 * request moves to done or failed with a reason that says so.
 *
 * The parts of a streamed or scheduled result (result.seq 1, 2, …, the last reply last) each travel as a
 * reply of their own, so they may arrive out of order: a re-send after a lost ACK comes after the parts
 * sent meanwhile. Their reply methods run one at a time, in seq order (turn()):
 *
 *   the next part            ──▶ runs; then the part it was holding up, if any
 *   a part ahead of a gap    ──▶ held: stored (received) but not run, so a restart loses nothing, until
 *                                the gap fills, or until the missing part's re-sends are over (holdMs):
 *                                then it runs with a line saying which parts are missing
 *   a part behind the cursor ──▶ runs at once, with a line saying it arrived late
 *
 * A re-sent copy of a part is the same message (same id): the inbox ACKs it again and never runs it twice.
 * The cursor (the last part written) is the request's stored result, written with each part's run; a
 * re-run after a restart of the target (result.rerun, or result.interrupted after a graceful stop) starts its
 * parts from seq 1 again.
 */
import type { Logger } from "../log.js";
import { type Envelope, type ErrorReport, isFinal } from "../message/message.js";
import { canonicalMethod, type MethodName } from "../message/methods.js";
import type { Store } from "../store/store.js";

/** A held part waits at least this long for a missing one, and at most HOLD_MAX_MS. */
const HOLD_MIN_MS = 5_000;
const HOLD_MAX_MS = 10 * 60_000;

/** A reply's turn to run its reply method (see turn()). */
export interface ReplyTurn {
  /** The reply to run: with a line first saying which parts are missing or late, when some are. */
  message: Envelope;
  /** Its run is over (stored, or cut short by a shutdown): the next part may go. */
  release(): void;
}

/** Where a request's parts stand: the last part written, and the parts waiting for their turn. */
interface PartStream {
  /** Generation: 0 for the first run on the target, 1 for a re-run after its restart (result.rerun or interrupted). */
  gen: number;
  seq: number;
  writing: boolean;
  waiting: Set<PartWaiter>;
}

interface PartWaiter {
  gen: number;
  seq: number;
  /** Its hold is over: it goes as soon as no earlier waiting part can go instead. */
  timedOut: boolean;
  wake(): void;
}

/** (gen, seq) order. */
const before = (a: { gen: number; seq: number }, b: { gen: number; seq: number }) =>
  a.gen < b.gen || (a.gen === b.gen && a.seq < b.seq);

export interface RepliesOptions {
  nodeName: string;
  store: Store;
  log: Logger;
  /** An error worth central's error log. */
  reportError(report: ErrorReport): void;
}

export class Replies {
  private readonly streams = new Map<string, PartStream>();

  constructor(private readonly opts: RepliesOptions) {}

  /**
   * Wait until `reply` may run its reply method: at once for a whole result; for a part, once the parts
   * before it have run (or their hold is over). Undefined when `signal` aborts first (shutdown): the part
   * stays stored and waits its turn again at the next start.
   */
  async turn(reply: Envelope, request: Envelope | undefined, signal: AbortSignal): Promise<ReplyTurn | undefined> {
    const seq = reply.result?.seq;
    if (seq === undefined) return { message: reply, release: () => undefined };
    const requestId = reply.requestId as string;
    const stream = this.streams.get(requestId) ?? this.loadStream(requestId);
    const me: PartWaiter = {
      gen: reply.result?.rerun || reply.result?.interrupted ? 1 : 0,
      seq,
      timedOut: false,
      wake: () => undefined,
    };
    const holdMs = holdFor(request);
    const timer = setTimeout(() => {
      me.timedOut = true;
      me.wake();
    }, holdMs);
    stream.waiting.add(me);
    if (!this.mayGo(stream, me))
      this.opts.log.info("a streamed part waits for the parts before it", { id: reply.id, requestId, seq });
    try {
      while (!(this.mayGo(stream, me) && !stream.writing)) {
        if (signal.aborted) return undefined;
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          me.wake = () => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          };
          signal.addEventListener("abort", onAbort, { once: true });
        });
      }
    } finally {
      clearTimeout(timer);
      stream.waiting.delete(me);
      if (signal.aborted) this.forget(requestId, stream);
    }
    if (signal.aborted) return undefined;
    stream.writing = true;
    const late = !before(stream, me);
    const first = me.gen > stream.gen ? 1 : stream.seq + 1;
    let note: string | undefined;
    if (late) note = `part ${seq} of ${requestId} arrived late, after the parts that follow it`;
    else if (seq > first)
      note = `part${seq - first > 1 ? `s ${first}-${seq - 1}` : ` ${first}`} of ${requestId} did not arrive within ${Math.round(holdMs / 1000)}s`;
    if (note) this.opts.log.warn("streamed parts out of order", { id: reply.id, requestId, seq, note });
    return {
      message: note === undefined ? reply : withNote(reply, note),
      release: () => {
        stream.writing = false;
        if (!late) {
          stream.gen = me.gen;
          stream.seq = me.seq;
        }
        for (const w of stream.waiting) w.wake();
        // The cursor is in the store from here on (the part's run stored it), unless a late part moved it back
        // there while the request still runs: then it is kept here until the next part.
        const state = late ? this.opts.store.outgoing.get(requestId)?.state : undefined;
        if (!late || state === undefined || isFinal(state)) this.forget(requestId, stream);
      },
    };
  }

  /** May this waiting part go next: the next one, one behind the cursor, or the first one left after a hold ran out. */
  private mayGo(stream: PartStream, w: PartWaiter): boolean {
    if (!before(stream, w)) return true;
    if (w.gen > stream.gen ? w.seq === 1 : w.seq === stream.seq + 1) return true;
    if (![...stream.waiting].some((o) => o.timedOut)) return false;
    return ![...stream.waiting].some((o) => o !== w && before(o, w));
  }

  /** A request's cursor, from its stored result (the last part written, kept with each part's run). */
  private loadStream(requestId: string): PartStream {
    const result = this.opts.store.outgoing.get(requestId)?.result;
    const stream: PartStream = {
      gen: result?.rerun || result?.interrupted ? 1 : 0,
      seq: result?.seq ?? 0,
      writing: false,
      waiting: new Set(),
    };
    this.streams.set(requestId, stream);
    return stream;
  }

  private forget(requestId: string, stream: PartStream): void {
    if (stream.waiting.size === 0 && !stream.writing) this.streams.delete(requestId);
  }

  /**
   * The request `reply` answers, or why it is refused: a reply may only run the reply method this
   * node asked for, from the node it asked — never a way for a peer to run any other method here.
   */
  requestAnswered(reply: Envelope, method: MethodName): { request: Envelope } | { refused: string } {
    const stored = this.opts.store.outgoing.get(reply.requestId as string);
    if (
      !stored ||
      // Sent by this node: a copy it relays for another origin (relay.ts) is answered at that origin only.
      stored.envelope.fromNode !== this.opts.nodeName ||
      stored.requestId !== null ||
      stored.toNode !== reply.fromNode ||
      canonicalMethod(stored.envelope.replyMethod) !== method
    ) {
      return {
        refused: `reply ${reply.id} from ${reply.fromNode} answers no ${method} request of ${this.opts.nodeName} (${reply.requestId})`,
      };
    }
    return { request: stored.envelope };
  }

  /**
   * Store the reply's run as done and move its request on, in one transaction. `error`: the reply
   * method failed here (the request still learns what happened there).
   */
  storeOutcome(reply: Envelope, error: string | undefined): void {
    const { store } = this.opts;
    const requestId = reply.requestId as string;
    const r = reply.result;
    const result = { ...r, ...(reply.data !== undefined && { data: reply.data }) };
    if (r?.partial) {
      store.moveRunToDoneAndRequestToRunning(reply, requestId, result);
      return;
    }
    const failed = Boolean(r?.error) || error !== undefined;
    let reason = r?.error ?? (error ? `the reply arrived but ${error}` : null);
    if (!r?.cancelled && store.outgoing.get(requestId)?.state === "cancelled") {
      reason = `${reason ? `${reason}; ` : ""}it had finished on ${reply.fromNode} before the cancel arrived`;
      this.opts.log.warn("a cancelled message had finished before its cancel arrived: its result stands", {
        id: requestId,
        toNode: reply.fromNode,
      });
    }
    // Not run there because its runBy had passed: expired, not failed.
    const state = r?.expired === true ? "expired" : r?.cancelled ? "cancelled" : failed ? "failed" : "done";
    store.moveRunToDoneAndRequestToFinal(reply, requestId, state, {
      reason,
      exitCode: r?.exitCode ?? null,
      result,
    });
  }

  /** Tell the log, and central for the last reply, that the reply method failed here. */
  reportFailure(reply: Envelope, method: MethodName, error: string): void {
    const requestId = reply.requestId as string;
    if (reply.result?.partial) {
      this.opts.log.warn("reply method failed on a streamed part", { id: reply.id, requestId, reason: error });
      return;
    }
    this.opts.log.warn("reply method failed", { id: reply.id, requestId, reason: error });
    this.opts.reportError({
      toNode: this.opts.nodeName,
      fromNode: reply.fromNode,
      method,
      id: requestId,
      reason: error,
    });
  }
}

/**
 * How long a part ahead of a gap waits for the missing one: as long as the missing part's re-sends may
 * still come, (replyACKTimeout + retryWait) × (1 + replyRetries) of its request, within 5 s and 10 min.
 * A part that comes later still is written when it comes, marked late.
 */
function holdFor(request: Envelope | undefined): number {
  const r = request ?? { replyACKTimeout: 0, retryWait: 0, replyRetries: 0 };
  const ms = (r.replyACKTimeout + (r.retryWait ?? 0)) * (1 + r.replyRetries) * 1000;
  return Math.min(HOLD_MAX_MS, Math.max(HOLD_MIN_MS, ms));
}

/** The reply with a line of Steward's before its data (data that is not plain text keeps the note in the log only). */
function withNote(reply: Envelope, note: string): Envelope {
  if (reply.dataEncoding !== undefined) return reply;
  return { ...reply, data: `[steward] ${note}\n${reply.data ?? ""}` };
}
