/**
 * The runs of received messages: each stored message runs in its own task, so
 * a slow method never holds up the others (docs/ARCHITECTURE.md).
 *
 *   received ──startTask──▶ (wait) ──▶ start ──▶ run ──▶ end
 *
 *   wait    at most maxConcurrentRuns run at once; the rest wait for a free run in arrival order, and a wait
 *           that lasts tells the origin its message is waiting. A reply's run and a ping's (runs that change
 *           nothing and start no process) do not wait: the node answers pings and records results however busy.
 *           A request whose runBy passes while it waits is not run: its reply says expired.
 *   start   durable: moveToRunning, and wait until that is on disk before the method runs, so that a
 *           crash's re-run is known for one (its reply says `rerun`; after a graceful stop, `interrupted`).
 *           early (a reply, or a method whose second run nobody could see): moveToRunning is only a
 *           note; the method runs at once, and the end stores the message again with it.
 *   run     the method once, with its own methodTimeout; a run lasting past RUNNING_NOTICE_MS tells the
 *           origin it is running. With schedule [interval, total]: again every interval until total
 *           has passed since the message arrived, each run but the last sent back as a part.
 *   end     one transaction: done + the reply queued (a request), or done + the request moved on
 *           (a reply, see replies.ts); written until it is on disk, then the reply goes out.
 *   stop    a graceful stop (close): no run starts any more; a schedule stops between two runs at once; runs
 *           in progress may finish for stopGracePeriod, their replies going out as usual. Then they are
 *           aborted (their process trees ended) and moved to interrupted: at the next start each runs
 *           again, its result marked `interrupted`, and a schedule goes on at its next slot. A crash
 *           leaves a run `running` instead: it runs again marked `rerun`, once the process group it may
 *           have left is ended (leftovers.ts). Port forwarding, told `resumed`, ends instead (portSession.ts).
 *   cancel  its origin cancelled it (inbox.ts): not run if it has not started (waiting included), its
 *           process tree ended if it runs, the way a timeout ends it; then it ends as usual, its reply
 *           saying `cancelled`. The mark is stored first, so a restart ends it the same way.
 */
import { errorText, MethodError, StoreError } from "../errors.js";
import type { Logger } from "../log.js";
import { newEnvelope } from "../message/envelope.js";
import { type Envelope, type ErrorReport, isFinal } from "../message/message.js";
import { canonicalMethod, CATALOG, type MethodName, wantsReply } from "../message/methods.js";
import { METHODS } from "../methods/index.js";
import type { MethodOutput, SubscriberControl } from "../methods/method.js";
import { now } from "../security/clock.js";
import type { Store } from "../store/store.js";
import { abortableSleep, MAX_TIMER_MS } from "../timers.js";
import { buildReply, type RunOutcome } from "./buildReply.js";
import { CopyHub } from "./copyChunks.js";
import { endLeftoverProcessGroup, processStartTime } from "./leftovers.js";
import { MethodMessages } from "./methodMessages.js";
import type { Outbox } from "./outbox.js";
import { PortHub } from "./ports.js";
import { publishNotice } from "./relay.js";
import type { Replies } from "./replies.js";
import type { Transport } from "./transport.js";
import type { Wire } from "./wire.js";

/**
 * How a message's last run ended before this start: false (none was cut short), cut by a crash (`rerun`), or
 * by a graceful stop (`interrupted`). Its result says which.
 */
export type Resumed = false | "rerun" | "interrupted";

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
  /** Seconds a graceful stop lets runs in progress finish before it ends them (stopGracePeriod). Absent: 0. */
  stopGracePeriod?: number | undefined;
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

/** Why `message` may not start any more (its runBy has passed), or undefined while it may. */
export function runByPassed(message: Envelope): string | undefined {
  if (message.runBy === undefined || message.requestId !== undefined || now() < message.runBy) return undefined;
  return `expired: not run by ${new Date(message.runBy).toISOString()} (runBy)`;
}

/** Why a graceful stop ended a run (its result, and a stream's last part, say so). */
const STOP_REASON = "node stopping (stopGracePeriod ran out): interrupted, runs again at the next start";

/** The methods whose output comes back in parts while they run. */
const STREAMS: ReadonlySet<MethodName> = new Set(["cliCommandCont", "tailFile"]);
/** Its origin cancelled it: the abort reason of its run, so that its reply says `cancelled`. */
class Cancelled extends Error {}

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

  /**
   * Wait in line for a free run: true once it is held; false when `signal` aborts first, or the time `until`
   * (ms since the epoch, the message's runBy) comes (none held).
   */
  wait(signal: AbortSignal, until?: number): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        resolve: (slot: boolean) => {
          signal.removeEventListener("abort", onAbort);
          clearTimeout(timer);
          resolve(slot);
        },
      };
      let timer: NodeJS.Timeout | undefined;
      // Never earlier than `until`: a timer may fire a little early, and one is at most MAX_TIMER_MS long.
      const arm = (at: number) => {
        timer = setTimeout(() => (now() >= at ? onAbort() : arm(at)), Math.min(Math.max(0, at - now()), MAX_TIMER_MS));
      };
      if (until !== undefined) arm(until);
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
  /** Aborted when the node stops: no run starts any more, and schedules stop between their runs. */
  private readonly stopping = new AbortController();
  private readonly slots: RunSlots;
  /** Port forwarding's frames, for portDst and portSrc. */
  private readonly ports: PortHub;
  /** File copies' chunks, for copySrc and copyDst. */
  private readonly copies: CopyHub;
  private readonly messages: MethodMessages;

  constructor(private readonly opts: RunnerOptions) {
    this.slots = new RunSlots(Math.max(1, opts.maxConcurrentRuns ?? Number.POSITIVE_INFINITY));
    this.ports = new PortHub(opts.transport, opts.wire, opts.log);
    this.copies = new CopyHub(opts.transport, opts.wire, (node, l) => opts.outbox.whenOnline(node, l), opts.log);
    this.messages = new MethodMessages(opts.store, opts.outbox);
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
      const resumed = record.state === "running" ? "rerun" : record.state === "interrupted" ? "interrupted" : false;
      this.startTask(record.envelope, resumed, record.receivedAt);
      // Cancelled before the stop: it ends now, without running, and its reply says so.
      if (record.cancelled) this.cancel(record.fromNode, record.id, record.cancelled);
    }
    return unfinished.length;
  }

  /** Its origin cancelled a stored message (marked so in the store already): stop its wait or its run. */
  cancel(fromNode: string, id: string, reason: string): void {
    this.running.get(`${fromNode}/${id}`)?.ac.abort(new Cancelled(reason));
  }

  /**
   * Run a stored message in its own task (no-op when it runs already). `resumed`: a crash or a stop cut its
   * last run short. A reply comes with its request when the caller has read it already.
   */
  startTask(message: Envelope, resumed: Resumed, receivedAt = Date.now(), request?: Envelope): void {
    const key = `${message.fromNode}/${message.id}`;
    if (this.closed || this.running.has(key)) return;
    const ac = new AbortController();
    this.running.set(key, { ac, message });
    const task = this.runInTurn(message, resumed, ac.signal, receivedAt, request)
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
    resumed: Resumed,
    signal: AbortSignal,
    receivedAt: number,
    request?: Envelope,
  ): Promise<void> {
    const method = canonicalMethod(message.method) as MethodName;
    if (message.requestId !== undefined || CATALOG[method].runTwiceHarmless === true)
      return this.runTask(message, resumed, signal, receivedAt, request);
    if (!this.slots.tryTake()) {
      const notice = setTimeout(() => this.noticeWaiting(message), RUNNING_NOTICE_MS);
      // A stop takes it out of the line at once: it never started, and stays received.
      const slot = await this.slots.wait(AbortSignal.any([signal, this.stopping.signal]), message.runBy);
      clearTimeout(notice);
      // Shutting down: it stays received and waits its turn again at the next start. Stopped otherwise
      // (its sender lost the right to it, or its runBy came): runTask ends it with the reason, without running it.
      if (!slot) return this.closed ? undefined : this.runTask(message, resumed, signal, receivedAt, request);
    }
    try {
      await this.runTask(message, resumed, signal, receivedAt, request);
    } finally {
      this.slots.release();
    }
  }

  private async runTask(
    message: Envelope,
    resumed: Resumed,
    signal: AbortSignal,
    receivedAt: number,
    known?: Envelope,
  ): Promise<void> {
    const rerun = resumed === "rerun";
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
    const sendPart = (outcome: RunOutcome, marked = resumed) => this.sendPart(message, outcome, ++parts, marked);
    const emit =
      !isReply && wantsReply(method)
        ? (data: string) => sendPart({ output: { data, exitCode: null }, error: undefined })
        : undefined;
    const runOnce = () => this.runOnce(turn?.message ?? message, method, request, signal, emit, resumed);
    // A resumed request whose sender has lost its right meanwhile (or lost it while it waited) is not run:
    // it ends with the reason.
    // One whose runBy passed while it waited (or before a restart resumed it) is not run either: it expires.
    const late = runByPassed(message);
    const refused =
      late ??
      (isReply
        ? undefined
        : signal.aborted && !this.closed
          ? errorText(signal.reason)
          : this.opts.stillAllowed?.(message));
    // A schedule a graceful stop interrupted goes on at its next slot: the slot the stop cut is not made up.
    const resumeAtNextSlot = !refused && !isReply && message.schedule !== undefined && resumed === "interrupted";
    let outcome: RunOutcome | undefined = refused
      ? { output: {}, error: refused, ...(late && { expired: true }) }
      : resumeAtNextSlot
        ? undefined
        : await runOnce();
    if (!refused && !isReply && message.schedule)
      outcome = await this.repeatOnSchedule(message, receivedAt, signal, outcome, runOnce, sendPart);
    clearTimeout(notice);
    // Stopping: cut short (or a schedule stopped before its end), it runs again at the next start.
    if (outcome === undefined || (this.closed && signal.aborted)) {
      try {
        await this.cutByStop(message, method, outcome, sendPart);
      } finally {
        turn?.release();
      }
      return;
    }
    // Stopped because its sender lost the right to it (recheck()), or cancelled it: that is the outcome its
    // origin learns.
    if (signal.aborted)
      outcome = {
        output: outcome.output,
        error: errorText(signal.reason),
        ...(signal.reason instanceof Cancelled && { cancelled: true }),
      };

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
          interrupted: resumed === "interrupted",
          maxSize: this.opts.maxOutput,
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
   * A graceful stop cut the run short, or stopped its schedule between two runs: it runs again at the next
   * start, marked interrupted. A stream's output since its last part goes back now, in a part that says so.
   */
  private async cutByStop(
    message: Envelope,
    method: MethodName,
    outcome: RunOutcome | undefined,
    sendPart: (outcome: RunOutcome, marked?: Resumed) => void,
  ): Promise<void> {
    if (outcome && STREAMS.has(method) && !message.schedule) {
      const data = outcome.output.data ?? "";
      const note = data.includes("[steward] stopped:") ? "" : `[steward] stopped: ${STOP_REASON}\n`;
      // Marked as the run it ends (not interrupted: the next run is), so that the origin writes it among that
      // run's parts, before the next run's (replies.ts orders parts by run, then seq).
      sendPart({ output: { ...outcome.output, data: data + note }, error: undefined });
    }
    try {
      this.opts.store.incoming.moveToInterrupted(message);
      await this.opts.store.durable();
    } catch (err) {
      // Left running: the next start runs it again all the same, marked as a crash's re-run.
      this.opts.log.warn("cannot store that a run was interrupted", { id: message.id, reason: errorText(err) });
    }
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
   * arrived, sending each run but the last as a part. Slots are counted from the arrival, so a restart
   * never starts the schedule over nor catches up the slots it missed: after a crash the cut run runs
   * again at once (`first`), after a graceful stop nothing does (`first` undefined); then the next slots
   * within total. Undefined when a graceful stop ends it before its last run.
   */
  private async repeatOnSchedule(
    message: Envelope,
    receivedAt: number,
    signal: AbortSignal,
    first: RunOutcome | undefined,
    runOnce: () => Promise<RunOutcome>,
    sendPart: (outcome: RunOutcome) => void,
  ): Promise<RunOutcome | undefined> {
    const [interval, total] = message.schedule as [number, number];
    let outcome = first;
    const end = receivedAt + total * 1000;
    let next = receivedAt + interval * 1000 * Math.max(1, Math.ceil((Date.now() - receivedAt) / (interval * 1000)));
    const sleepUntilStopped = AbortSignal.any([signal, this.stopping.signal]);
    while (next < end && !signal.aborted) {
      if (outcome) sendPart(outcome);
      if (this.stopping.signal.aborted) return undefined;
      await abortableSleep(next - Date.now(), sleepUntilStopped);
      if (this.stopping.signal.aborted && !signal.aborted) return undefined;
      if (signal.aborted) break;
      const refused = this.opts.stillAllowed?.(message);
      if (refused) return { output: {}, error: refused };
      outcome = await runOnce();
      next += interval * 1000;
    }
    // Resumed after a stop with no slot left before its end: it ends without another run.
    return outcome ?? { output: {}, error: undefined };
  }

  /** Run the method once, with its own methodTimeout; the node's shutdown (`signal`) aborts it too. */
  private async runOnce(
    message: Envelope,
    method: MethodName,
    request: Envelope | undefined,
    signal: AbortSignal,
    emit: ((data: string) => void) | undefined,
    resumed: Resumed,
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
    const frame = CATALOG[method].keepsFrame ? opts.store.incoming.frame(message.fromNode, message.id) : undefined;
    try {
      const output = await METHODS[method]({
        nodeName: opts.nodeName,
        dataFolder: opts.dataFolder,
        message,
        ...(request && { request }),
        // Above max_payload the reply goes in chunks; past maxMessageSize it is cut.
        maxOutput: opts.maxOutput,
        signal: run.signal,
        stopping: this.stopping.signal,
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
        ...(resumed && { resumed }),
        ports: this.ports,
        copies: this.copies,
        send: (fields, onEnded) => {
          const envelope = newEnvelope(fields);
          const stop = onEnded
            ? opts.store.outgoing.onFinal((id) => {
                if (id !== envelope.id) return;
                stop?.();
                const rec = opts.store.outgoing.get(id);
                // Told outside the store's move, which calls this.
                setImmediate(() => onEnded(rec?.state ?? "failed", rec?.reason ?? undefined));
              })
            : undefined;
          if (opts.store.outgoing.add(envelope)) opts.outbox.deliver({ envelope, attempt: 0 });
          else stop?.();
          return envelope;
        },
        withdraw: (id, by, unless = []) => {
          const rec = opts.store.outgoing.get(id);
          return !!rec && !isFinal(rec.state) && !unless.includes(rec.state) && opts.outbox.cancel(rec, by);
        },
        ...(frame && { frame }),
        ...(!request && { messages: this.messages }),
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
    // A relayed message's origin hears it through the relay (relay.ts).
    publishNotice(this.opts.transport, this.opts.wire, message, { id: message.id, state } satisfies RunNotice);
  }

  private deliverBy(): number {
    return now() + this.opts.maxMessageAge * 1000;
  }

  /** Send one part of a streamed or scheduled result now, stored first like every reply. */
  private sendPart(message: Envelope, outcome: RunOutcome, seq: number, resumed: Resumed): void {
    const { store, outbox, log } = this.opts;
    const part = buildReply(message, this.opts.nodeName, outcome, {
      rerun: resumed === "rerun",
      interrupted: resumed === "interrupted",
      maxSize: this.opts.maxOutput,
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
  private ran(
    message: Envelope,
    method: MethodName,
    { output, error, cancelled }: RunOutcome,
    rerun: boolean,
    ms: number,
  ): void {
    const { log } = this.opts;
    this.opts.onExecuted?.(message, output, error, rerun, ms);
    if (!error) {
      log.debug("method done", { id: message.id, method, fromNode: message.fromNode, exitCode: output.exitCode });
      return;
    }
    // Its origin asked for it: nothing went wrong, central's error log need not hear of it.
    if (cancelled) {
      log.info("message cancelled", { id: message.id, method, fromNode: message.fromNode, reason: error });
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

  /**
   * A graceful stop: no run starts any more; runs in progress may finish for stopGracePeriod (their replies
   * go out meanwhile); then every method still running is aborted, and one that ignores its signal does not
   * hold the shutdown past `graceMs`.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    const stopGraceMs = (this.opts.stopGracePeriod ?? 0) * 1000;
    if (this.tasks.size > 0 && stopGraceMs > 0) {
      this.opts.log.info("stopping: runs in progress may finish first", {
        running: this.tasks.size,
        stopGracePeriod: this.opts.stopGracePeriod,
      });
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.tasks]),
        new Promise((resolve) => (waited = setTimeout(resolve, stopGraceMs))),
      ]);
      clearTimeout(waited);
    }
    if (this.running.size > 0)
      this.opts.log.warn("stopping: ending the runs still in progress; they run again at the next start", {
        running: this.running.size,
      });
    for (const { ac } of this.running.values()) ac.abort(new Error(STOP_REASON));
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
