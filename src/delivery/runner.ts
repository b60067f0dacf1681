/**
 * The runs of received messages: each stored message runs in its own task, so
 * a slow method never holds up the others (docs/ARCHITECTURE.md).
 *
 *   received ──startTask──▶ (wait) ──▶ start ──▶ run ──▶ end
 *
 *   wait    at most maxConcurrentRuns run at once; the rest wait for a free run in arrival order, and a wait
 *           that lasts tells the origin its message is waiting. A reply's run and a ping's (runs that change
 *           nothing and start no process) do not wait: the node answers pings and records results however busy.
 *   start   durable: moveToRunning, and wait until that is on disk before the method runs, so that a
 *           crash's re-run is known for one (its reply says `rerun`).
 *           early (a reply, or a method whose second run nobody could see): moveToRunning is only a
 *           note; the method runs at once, and the end stores the message again with it.
 *   run     the method once, with its own methodTimeout; a run lasting past RUNNING_NOTICE_MS tells the
 *           origin it is running. With schedule [interval, total]: again every interval until total
 *           has passed since the message arrived, each run but the last sent back as a part.
 *   end     one transaction: done + the reply queued (a request), or done + the request moved on
 *           (a reply, see replies.ts); written until it is on disk, then the reply goes out.
 *   stop    aborted: the message stays running and runs again at the next start, once the process
 *           group a crash may have left is ended (leftovers.ts).
 */
import { errorText, MethodError, StoreError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { canonicalMethod, CATALOG, type MethodName, wantsReply } from "../message/methods.js";
import { METHODS } from "../methods/index.js";
import type { MethodOutput, SubscriberControl } from "../methods/method.js";
import { now } from "../security/clock.js";
import type { Store } from "../store/store.js";
import { abortableSleep } from "../timers.js";
import { buildReply, type RunOutcome } from "./buildReply.js";
import { endLeftoverProcessGroup, processStartTime } from "./leftovers.js";
import type { Outbox } from "./outbox.js";
import type { Replies } from "./replies.js";
import { stateSubject } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Wire } from "./wire.js";

/** On `<origin>._state.<node>`: a request the origin sent waits here for a free run, or runs. Best effort. */
export interface RunNotice {
  id: string;
  state: "waiting" | "running";
}

export interface RunnerOptions {
  nodeName: string;
  dataFolder: string;
  /** Most bytes of a method's output to keep (maxMessageSize). */
  maxOutput: number;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  wire: Wire;
  /** Seconds a reply may take to reach its origin (maxMessageAge): its deliverBy. */
  maxMessageAge: number;
  log: Logger;
  /**
   * Why the sender of a request may no longer have it run here (its key revoked, the rules changed), or
   * undefined while it may: asked again before a resumed run, before each scheduled run, and of every
   * running message when central's bundle changes.
   */
  stillAllowed?: (message: Envelope) => string | undefined;
  /** The node's subscribers, for the op methods. */
  subscribers: SubscriberControl;
  replies: Replies;
  /** An error worth central's error log. */
  reportError(report: ErrorReport): void;
  /** Most runs at once (maxConcurrentRuns); the rest wait in arrival order. Absent: no limit. */
  maxConcurrentRuns?: number | undefined;
  /** A method ran here (not a reply), once per message: metrics and the audit log. */
  onExecuted?(
    message: Envelope,
    output: MethodOutput,
    error: string | undefined,
    rerun: boolean,
    durationMs: number,
  ): void;
}

/** A received message whose store turn was rolled back (disk full at commit): it must not run. */
class NotStored extends Error {
  constructor(message: Envelope) {
    super(`message ${message.id} from ${message.fromNode} is not in the store`);
  }
}

/** How long a run goes (or waits for a free run) before its origin is told. */
const RUNNING_NOTICE_MS = 100;

/** At most `max` runs at once; the others wait, first come first served. */
class RunSlots {
  private taken = 0;
  private readonly waiting: { resolve: (slot: boolean) => void }[] = [];

  constructor(private readonly max: number) {}

  /** A free run, at once, or false. */
  tryTake(): boolean {
    if (this.taken >= this.max) return false;
    this.taken++;
    return true;
  }

  /** Wait in line for a free run: true once it is held; false when `signal` aborts first (none held). */
  wait(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        resolve: (slot: boolean) => {
          signal.removeEventListener("abort", onAbort);
          resolve(slot);
        },
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        waiter.resolve(false);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** A run ended: its slot goes to the first in line, if any. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next.resolve(true);
    else this.taken--;
  }
}

/** How long to wait before writing again what could not be stored. */
const STORE_RETRY_MS = 2000;

export class Runner {
  private running = new Map<string, { ac: AbortController; message: Envelope }>();
  private tasks = new Set<Promise<void>>();
  private closed = false;
  private readonly slots: RunSlots;

  constructor(private readonly opts: RunnerOptions) {
    this.slots = new RunSlots(Math.max(1, opts.maxConcurrentRuns ?? Number.POSITIVE_INFINITY));
  }

  /** Central's bundle changed: stop every running request whose sender may no longer have it run. */
  recheck(): void {
    for (const { ac, message } of this.running.values()) {
      if (message.requestId !== undefined) continue;
      const refused = this.opts.stillAllowed?.(message);
      if (refused) {
        this.opts.log.warn("stopped a running message: its sender may no longer run it", {
          id: message.id,
          reason: refused,
        });
        ac.abort(new Error(refused));
      }
    }
  }

  /** Run every received message that did not finish before the last stop; returns how many. */
  resume(): number {
    const unfinished = this.opts.store.incoming.unfinished();
    for (const record of unfinished) {
      // A crash leaves the run's process group behind: end it before running the message again.
      endLeftoverProcessGroup(record, this.opts.log);
      this.startTask(record.envelope, record.state === "running", record.receivedAt);
    }
    return unfinished.length;
  }

  /**
   * Run a stored message in its own task (no-op when it runs already). `rerun`: a stop cut its last
   * run short. A reply comes with its request when the caller has read it already.
   */
  startTask(message: Envelope, rerun: boolean, receivedAt = Date.now(), request?: Envelope): void {
    const key = `${message.fromNode}/${message.id}`;
    if (this.closed || this.running.has(key)) return;
    const ac = new AbortController();
    this.running.set(key, { ac, message });
    const task = this.runInTurn(message, rerun, ac.signal, receivedAt, request)
      .catch((err: unknown) =>
        err instanceof NotStored
          ? this.opts.log.warn(
              "a received message was rolled back before it ran (disk trouble); not run, not ACKed: its sender sends it again",
              { id: message.id },
            )
          : this.opts.log.error("message task failed", { id: message.id, reason: errorText(err) }),
      )
      .finally(() => {
        this.running.delete(key);
        this.tasks.delete(task);
      });
    this.tasks.add(task);
  }

  /** Wait for a free run (unless it needs none), run, and hand the run on to the next in line. */
  private async runInTurn(
    message: Envelope,
    rerun: boolean,
    signal: AbortSignal,
    receivedAt: number,
    request?: Envelope,
  ): Promise<void> {
    const method = canonicalMethod(message.method) as MethodName;
    if (message.requestId !== undefined || CATALOG[method].runTwiceHarmless === true)
      return this.runTask(message, rerun, signal, receivedAt, request);
    if (!this.slots.tryTake()) {
      const notice = setTimeout(() => this.noticeWaiting(message), RUNNING_NOTICE_MS);
      const slot = await this.slots.wait(signal);
      clearTimeout(notice);
      // Shutting down: it stays received and waits its turn again at the next start. Stopped otherwise
      // (its sender lost the right to it): runTask ends it with the reason, without running it.
      if (!slot) return this.closed ? undefined : this.runTask(message, rerun, signal, receivedAt, request);
    }
    try {
      await this.runTask(message, rerun, signal, receivedAt, request);
    } finally {
      this.slots.release();
    }
  }

  private async runTask(
    message: Envelope,
    rerun: boolean,
    signal: AbortSignal,
    receivedAt: number,
    known?: Envelope,
  ): Promise<void> {
    const { store } = this.opts;
    const method = canonicalMethod(message.method) as MethodName;
    const isReply = message.requestId !== undefined;
    const request = isReply ? (known ?? store.outgoing.get(message.requestId as string)?.envelope) : undefined;
    const early = startsEarly(message, method);
    const startStored = this.storeStart(message, early);
    if (startStored) await startStored;
    // A part of a streamed result waits for the parts before it (replies.ts); on shutdown it waits for the next start.
    const turn = isReply ? await this.opts.replies.turn(message, request, signal) : undefined;
    if (isReply && !turn) return;
    // "running" is news only for a run that lasts: a quick one's reply follows at once and says more,
    // so the notice waits a moment (a message and a store write less per quick message on both sides).
    const notice = isReply ? undefined : setTimeout(() => this.notice(message, "running"), RUNNING_NOTICE_MS);

    const started = Date.now();
    let parts = 0;
    const sendPart = (outcome: RunOutcome) => this.sendPart(message, outcome, ++parts, rerun);
    const emit =
      !isReply && wantsReply(method)
        ? (data: string) => sendPart({ output: { data, exitCode: null }, error: undefined })
        : undefined;
    const runOnce = () => this.runOnce(turn?.message ?? message, method, request, signal, emit);
    // A resumed request whose sender has lost its right meanwhile (or lost it while it waited) is not run:
    // it ends with the reason.
    const refused = isReply
      ? undefined
      : signal.aborted && !this.closed
        ? errorText(signal.reason)
        : this.opts.stillAllowed?.(message);
    let outcome: RunOutcome = refused ? { output: {}, error: refused } : await runOnce();
    if (!refused && !isReply && message.schedule)
      outcome = await this.repeatOnSchedule(message, receivedAt, signal, outcome, runOnce, sendPart);
    clearTimeout(notice);
    if (this.closed && signal.aborted) {
      turn?.release();
      return; // Shutting down: it stays "running" and is re-run at next start.
    }
    // Stopped because its sender lost the right to it (recheck()): that is the outcome its origin learns.
    if (signal.aborted) outcome = { output: outcome.output, error: errorText(signal.reason) };

    if (isReply) {
      try {
        await this.storeEnd(message, early, () => this.opts.replies.storeOutcome(message, outcome.error));
      } finally {
        turn?.release();
      }
      if (outcome.error) this.opts.replies.reportFailure(message, method, outcome.error);
      return;
    }
    const reply = wantsReply(method)
      ? buildReply(message, this.opts.nodeName, outcome, {
          rerun,
          maxPayload: this.opts.transport.maxPayload,
          deliverBy: this.deliverBy(),
          ...(parts > 0 && { part: { seq: parts + 1, partial: false } }),
        })
      : undefined;
    await this.storeEnd(message, early, () => store.moveRunToDone(message, reply));
    if (reply) this.opts.outbox.deliver({ envelope: reply, attempt: 0 });
    this.ran(message, method, outcome, rerun, Date.now() - started);
  }

  /**
   * The run's start is on disk before anything runs that a re-run would repeat visibly.
   * An early run does not wait: its start is noted in passing, and its end is stored together
   * with the message itself (see storeEnd), and gets no promise to wait for: it runs in this turn,
   * as the message arrives.
   */
  private storeStart(message: Envelope, early: boolean): Promise<void> | undefined {
    const { store } = this.opts;
    if (!early)
      return this.writeUntilOnDisk(message, () => {
        if (!store.incoming.moveToRunning(message)) throw new NotStored(message);
      });
    try {
      store.incoming.moveToRunning(message);
    } catch {
      // Only a note: the run's end is what counts for an early run.
    }
    return undefined;
  }

  /**
   * Store the run's end (`write`: one of the store's moveRunToDone… verbs). An early run stores the
   * message again (idempotent) in the same turn, so that its end stands even if the turn that
   * stored the message was rolled back (disk full): the sender's re-send is then a duplicate.
   */
  private storeEnd(message: Envelope, early: boolean, write: () => void): Promise<void> {
    return this.writeUntilOnDisk(message, () => {
      if (early) this.opts.store.incoming.add(message);
      write();
    });
  }

  /**
   * Make a store write a message cannot go on without, and resolve once it is on disk
   * (store.durable()). When that fails (disk full, say) it tries again every 2 s — the write
   * itself again only if its turn was rolled back — rather than leave the message half-done until
   * the next start. On shutdown it gives up; the message is then resumed at the next start.
   */
  private async writeUntilOnDisk(message: Envelope, write: () => void): Promise<void> {
    let written = false;
    for (;;) {
      try {
        if (!written) write();
        written = true;
        await this.opts.store.durable();
        return;
      } catch (err) {
        if (err instanceof NotStored) throw err;
        // Rolled back (disk full at commit): write it again. A failed sync: the write stands, sync again.
        if (err instanceof StoreError && err.lost) written = false;
        if (this.closed) throw err;
        this.opts.log.error("cannot store a message's progress; trying again", {
          id: message.id,
          reason: errorText(err),
        });
        await new Promise((r) => setTimeout(r, STORE_RETRY_MS));
      }
    }
  }

  /**
   * schedule [interval, total]: run again every interval until total has passed since the message
   * arrived, sending each run but the last as a part. After a restart, what is left of it runs.
   */
  private async repeatOnSchedule(
    message: Envelope,
    receivedAt: number,
    signal: AbortSignal,
    first: RunOutcome,
    runOnce: () => Promise<RunOutcome>,
    sendPart: (outcome: RunOutcome) => void,
  ): Promise<RunOutcome> {
    const [interval, total] = message.schedule as [number, number];
    let outcome = first;
    const end = receivedAt + total * 1000;
    let next = receivedAt + interval * 1000 * Math.max(1, Math.ceil((Date.now() - receivedAt) / (interval * 1000)));
    while (next < end && !signal.aborted) {
      sendPart(outcome);
      await abortableSleep(next - Date.now(), signal);
      if (signal.aborted) break;
      const refused = this.opts.stillAllowed?.(message);
      if (refused) return { output: {}, error: refused };
      outcome = await runOnce();
      next += interval * 1000;
    }
    return outcome;
  }

  /** Run the method once, with its own methodTimeout; the node's shutdown (`signal`) aborts it too. */
  private async runOnce(
    message: Envelope,
    method: MethodName,
    request: Envelope | undefined,
    signal: AbortSignal,
    emit: ((data: string) => void) | undefined,
  ): Promise<RunOutcome> {
    const { opts } = this;
    const run = new AbortController();
    const onShutdown = () => run.abort(signal.reason);
    signal.addEventListener("abort", onShutdown, { once: true });
    const timeout =
      message.methodTimeout >= 0
        ? setTimeout(
            () => run.abort(new Error(`method timed out after ${message.methodTimeout}s (methodTimeout)`)),
            message.methodTimeout * 1000,
          )
        : undefined;
    try {
      const output = await METHODS[method]({
        nodeName: opts.nodeName,
        dataFolder: opts.dataFolder,
        message,
        ...(request && { request }),
        // What the broker cannot carry in one reply is cut anyway: keep no more than that.
        maxOutput: Math.min(opts.maxOutput, opts.transport.maxPayload),
        signal: run.signal,
        log: opts.log,
        subscribers: opts.subscribers,
        onSpawn: (pgid) => {
          try {
            opts.store.incoming.recordProcessGroup(message, pgid, processStartTime(pgid));
          } catch (err) {
            // Only for ending a crash's leftovers: never worth failing the run (or losing its timeout) over.
            opts.log.warn("cannot record a run's process group", { id: message.id, pgid, reason: errorText(err) });
          }
        },
        ...(emit && { emit }),
      });
      return { output, error: undefined };
    } catch (err) {
      const error = err instanceof MethodError ? err.message : `${method}: ${errorText(err)}`;
      return { output: (err instanceof MethodError ? err.output : undefined) ?? {}, error };
    } finally {
      clearTimeout(timeout);
      signal.removeEventListener("abort", onShutdown);
    }
  }

  /**
   * Tell the origin its message waits for a free run, once it is on disk here: the origin stops re-sending
   * a message that waits, so a message whose store turn is rolled back (disk full) must not say so.
   */
  private noticeWaiting(message: Envelope): void {
    this.opts.store.durable().then(
      () => {
        if (this.opts.store.incoming.get(message.fromNode, message.id)?.state === "received")
          this.notice(message, "waiting");
      },
      () => undefined,
    );
  }

  /** Tell the message's origin that its method waits or runs (best effort: the reply settles the state anyway). */
  private notice(message: Envelope, state: RunNotice["state"]): void {
    const subject = stateSubject(message.fromNode, this.opts.wire.nodeName);
    this.opts.transport.publish(subject, this.opts.wire.seal(subject, { id: message.id, state } satisfies RunNotice));
  }

  private deliverBy(): number {
    return now() + this.opts.maxMessageAge * 1000;
  }

  /** Send one part of a streamed or scheduled result now, stored first like every reply. */
  private sendPart(message: Envelope, outcome: RunOutcome, seq: number, rerun: boolean): void {
    const { store, outbox, log } = this.opts;
    const part = buildReply(message, this.opts.nodeName, outcome, {
      rerun,
      maxPayload: this.opts.transport.maxPayload,
      deliverBy: this.deliverBy(),
      part: { seq, partial: true },
    });
    const failed = (err: unknown) =>
      log.error("cannot store a part of a streamed result", { id: message.id, seq, reason: errorText(err) });
    try {
      // Sent once on disk, like every reply (parts of one run reach the disk, and so the outbox, in order).
      if (store.outgoing.add(part)) store.durable().then(() => outbox.deliver({ envelope: part, attempt: 0 }), failed);
    } catch (err) {
      failed(err);
    }
  }

  /** A request's method ran here: metrics, audit log, and central's error log when it failed. */
  private ran(message: Envelope, method: MethodName, { output, error }: RunOutcome, rerun: boolean, ms: number): void {
    const { log } = this.opts;
    this.opts.onExecuted?.(message, output, error, rerun, ms);
    if (!error) {
      log.debug("method done", { id: message.id, method, fromNode: message.fromNode, exitCode: output.exitCode });
      return;
    }
    log.warn("method failed", { id: message.id, method, fromNode: message.fromNode, reason: error });
    // An error report that fails is logged, never reported again (no loops).
    if (!CATALOG[method].errorReport)
      this.opts.reportError({
        toNode: this.opts.nodeName,
        fromNode: message.fromNode,
        method,
        id: message.id,
        reason: error,
      });
  }

  /** Abort every running method; a method that ignores its signal does not hold the shutdown past `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    for (const { ac } of this.running.values()) ac.abort(new Error("node shutting down"));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        if (this.tasks.size > 0)
          this.opts.log.warn("stopping with methods still running; they run again at next start", {
            running: this.tasks.size,
          });
        resolve();
      }, graceMs);
    });
    await Promise.race([Promise.allSettled([...this.tasks]), grace]);
    clearTimeout(timer);
  }
}

/**
 * Runs that start before the message is on disk: a reply (its run records the result; the request's
 * state shows it once) and the methods whose second run nobody could see (runTwiceHarmless).
 */
function startsEarly(message: Envelope, method: MethodName): boolean {
  return message.requestId !== undefined || CATALOG[method].runTwiceHarmless === true;
}
