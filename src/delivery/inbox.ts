/**
 * The subscriber side. A message arrives on <thisNode>.<method>; it is
 * checked, stored, and only then ACKed with its own id (DESIGN §3.2). A
 * message already in the store is ACKed again and not run again (§3.4).
 * Each stored message then runs in its own task (§3.7):
 *
 *   received ──▶ running ──▶ done  (+ the reply stored in the same transaction)
 *
 * A reply (it carries `requestId`) runs its replyMethod here on the node that
 * sent the request, with the path taken from the stored request, and moves
 * that request to done or failed.
 */
import type { Msg } from "@nats-io/transport-node";
import { readFileSync } from "node:fs";
import { errorText, MethodError, StoreError } from "../errors.js";
import type { Logger } from "../log.js";
import { newId } from "../message/id.js";
import type { Envelope, MethodResult } from "../message/message.js";
import { canonicalMethod, type MethodName, RUN_TWICE_HARMLESS, wantsReply } from "../message/methods.js";
import { METHODS } from "../methods/index.js";
import type { AllowedNodes, MethodOutput } from "../methods/method.js";
import type { Store } from "../store/store.js";
import { abortableSleep } from "../timers.js";
import type { Outbox } from "./outbox.js";
import { stateSubject } from "./subjects.js";
import { Subscribers } from "./subscribers.js";
import type { Transport } from "./transport.js";
import { type Ack, decodeJson, encode, envelopeProblem, type StateNotice } from "./wire.js";

export interface InboxOptions {
  nodeName: string;
  dataFolder: string;
  /** The subscribers to start: method → nodes allowed to use it. */
  subscribers: Partial<Record<MethodName, AllowedNodes>>;
  /** Most bytes of a method's output to keep (maxMessageSize). */
  maxOutput: number;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  log: Logger;
  /** An error worth central's error log. */
  reportError(e: { toNode: string; fromNode: string; method: string; id?: string; reason: string }): void;
  /** A node said hello (central). */
  onHello(node: string): void;
  /** A method ran here (not a reply), once per message: metrics and the audit log. */
  onExecuted?(env: Envelope, output: MethodOutput, error: string | undefined, rerun: boolean, durationMs: number): void;
}

/** A received message whose store turn was rolled back (disk full at commit): it must not run. */
class NotStored extends Error {
  constructor(env: Envelope) {
    super(`message ${env.id} from ${env.fromNode} is not in the store`);
  }
}

/** How long a run goes before its origin is told it is running. */
const RUNNING_NOTICE_MS = 100;

export class Inbox {
  private running = new Map<string, AbortController>();
  private tasks = new Set<Promise<void>>();
  private closed = false;
  readonly subscribers: Subscribers;

  constructor(private readonly o: InboxOptions) {
    this.subscribers = new Subscribers(o.nodeName, o.transport, (msg, method) => this.onMessage(msg, method));
  }

  /** Subscribe to this node's subjects. Safe before the broker is reachable. */
  start(): void {
    const { transport, nodeName } = this.o;
    for (const [method, allowed] of Object.entries(this.o.subscribers)) {
      if (allowed) this.subscribers.start(method as MethodName, allowed);
    }
    transport.subscribe(stateSubject(nodeName), (msg) => this.onNotice(msg));
  }

  /** Run every received message that did not finish before the last stop (DESIGN §3.5). */
  resume(): number {
    const unfinished = this.o.store.unfinishedIncoming();
    for (const rec of unfinished) {
      // A crash leaves the run's process group behind: end it before running the message again.
      // If the leader is gone its pid cannot have become another group's id while our orphans hold the group;
      // if it is alive, its start time tells ours from a process that reused the pid.
      const leaderStart = rec.pgid === null ? undefined : processStartTime(rec.pgid);
      if (rec.state === "running" && rec.pgid !== null && (leaderStart === null || leaderStart === rec.pstart)) {
        try {
          process.kill(-rec.pgid, "SIGKILL");
          this.o.log.info("ended a process group left running by a crash", { id: rec.id, pgid: rec.pgid });
        } catch {
          // Gone meanwhile.
        }
      }
      this.spawn(rec.envelope, rec.state === "running", rec.receivedAt);
    }
    return unfinished.length;
  }

  private onMessage(msg: Msg, method: MethodName): void {
    try {
      this.receive(msg, method);
    } catch (err) {
      // Whatever a peer sends, the node stays up.
      this.o.log.error("could not handle a received message", { subject: msg.subject, reason: errorText(err) });
    }
  }

  private receive(msg: Msg, method: MethodName): void {
    let env: Envelope;
    try {
      const value = decodeJson(msg.data);
      const problem = envelopeProblem(value);
      if (problem) {
        this.refuse(msg, `bad message: ${problem}`, value);
        return;
      }
      env = value as Envelope;
    } catch {
      this.refuse(msg, "bad message: not JSON");
      return;
    }
    if (env.toNode !== this.o.nodeName) {
      this.refuse(msg, `message for ${env.toNode} arrived at ${this.o.nodeName}`, env);
      return;
    }
    if (canonicalMethod(env.method) !== method) {
      this.refuse(msg, `method ${env.method} sent on the subject of ${method}`, env);
      return;
    }

    if (env.requestId === undefined && !this.subscribers.allows(method, env.fromNode)) {
      this.refuse(msg, `${env.fromNode} is not allowed to use ${method} on ${this.o.nodeName} (allowedNodes)`, env);
      return;
    }
    if (method === "hello") {
      // Hellos are heartbeats: recorded, never stored or run as messages. One sent as a message wants its ACK.
      this.o.onHello(env.fromNode);
      if (msg.reply) msg.respond(encode({ ack: env.id } satisfies Ack));
      return;
    }
    let request: Envelope | undefined;
    if (env.requestId !== undefined) {
      // A reply may only run the reply method this node asked for, from the node it asked:
      // never a way for a peer to run any other method here.
      const stored = this.o.store.getOutgoing(env.requestId);
      request = stored?.envelope;
      if (
        !stored ||
        stored.requestId !== null ||
        stored.toNode !== env.fromNode ||
        canonicalMethod(stored.envelope.replyMethod) !== method
      ) {
        this.refuse(
          msg,
          `reply ${env.id} from ${env.fromNode} answers no ${method} request of ${this.o.nodeName} (${env.requestId})`,
          env,
        );
        return;
      }
    }

    let fresh: boolean;
    try {
      fresh = this.o.store.addIncoming(env);
    } catch (err) {
      // Not stored, so no ACK: the sender will re-send, and we may have disk space by then.
      this.o.log.error("cannot store a received message; not ACKing it", { id: env.id, reason: errorText(err) });
      return;
    }
    if (!fresh)
      this.o.log.debug("duplicate message ACKed again, not run again", { id: env.id, fromNode: env.fromNode });
    // Its task starts now and writes the run's start in this same turn, so that one disk sync covers
    // the message and its start; the run itself waits for that sync (see execute).
    // Stored: run it whatever happens to the ACK (a failed respond must not strand it until restart).
    if (fresh) this.spawn(env, false, Date.now(), request);
    // ACK only once it is on disk (DESIGN §3.2); a duplicate's first copy may still be on its way there.
    this.o.store.durable().then(
      () => {
        if (msg.reply) msg.respond(encode({ ack: env.id } satisfies Ack));
      },
      // Not ACKed: the sender re-sends. If the turn was rolled back, the task finds its message gone and does not run it.
      (err: unknown) =>
        this.o.log.error("a received message is not confirmed on disk; not ACKing it", {
          id: env.id,
          reason: errorText(err),
        }),
    );
  }

  private refuse(msg: Msg, reason: string, value?: unknown): void {
    const id = (value as Partial<Envelope> | undefined)?.id;
    const fromNode = (value as Partial<Envelope> | undefined)?.fromNode;
    this.o.log.warn("refused a message", { subject: msg.subject, id, fromNode, reason });
    if (msg.reply) msg.respond(encode({ refused: reason, ...(typeof id === "string" && { id }) } satisfies Ack));
    if (typeof fromNode === "string") {
      this.o.reportError({
        toNode: this.o.nodeName,
        fromNode,
        method: msg.subject.split(".")[1] ?? "?",
        ...(typeof id === "string" && { id }),
        reason,
      });
    }
  }

  private onNotice(msg: Msg): void {
    try {
      const n = decodeJson(msg.data) as StateNotice;
      if (n.state === "running" && typeof n.id === "string") this.o.store.markRunning(n.id);
    } catch {
      // Best effort by design: the reply settles the state anyway.
    }
  }

  /** Run a stored message in its own task; a reply comes with its request, when the caller has read it already. */
  private spawn(env: Envelope, rerun: boolean, receivedAt = Date.now(), request?: Envelope): void {
    const key = `${env.fromNode}/${env.id}`;
    if (this.closed || this.running.has(key)) return;
    const ac = new AbortController();
    this.running.set(key, ac);
    const task = this.execute(env, rerun, ac, receivedAt, request)
      .catch((err: unknown) =>
        err instanceof NotStored
          ? this.o.log.warn(
              "a received message was rolled back before it ran (disk trouble); not run, not ACKed: its sender sends it again",
              { id: env.id },
            )
          : this.o.log.error("message task failed", { id: env.id, reason: errorText(err) }),
      )
      .finally(() => {
        this.running.delete(key);
        this.tasks.delete(task);
      });
    this.tasks.add(task);
  }

  private async execute(
    env: Envelope,
    rerun: boolean,
    ac: AbortController,
    receivedAt: number,
    known?: Envelope,
  ): Promise<void> {
    const { store, log } = this.o;
    const method = canonicalMethod(env.method) as MethodName;
    const isReply = env.requestId !== undefined;
    const request = isReply ? (known ?? store.getOutgoing(env.requestId as string)?.envelope) : undefined;
    // The run's start is on disk before anything runs that a re-run would repeat visibly (§3.5).
    // An early run (startsEarly) does not wait: its start is noted in passing, and its end is stored
    // together with the message itself (again, idempotent), so that the end stands even if the turn
    // that stored the message was rolled back (disk full) — the sender's re-send is then a duplicate.
    const early = startsEarly(env, method);
    if (early) {
      try {
        store.startRun(env);
      } catch {
        // Only a note: the run's end is what counts for an early run.
      }
    } else
      await this.persist(env, () => {
        if (!store.startRun(env)) throw new NotStored(env);
      });
    const complete = (write: () => void) =>
      this.persist(env, () => {
        if (early) store.addIncoming(env);
        write();
      });
    // "running" is news only for a run that lasts: a quick one's reply follows at once and says more,
    // so the notice waits a moment (a message and a store write less per quick message on both sides).
    const notice = isReply
      ? undefined
      : setTimeout(
          () =>
            this.o.transport.publish(
              stateSubject(env.fromNode),
              encode({ id: env.id, state: "running" } satisfies StateNotice),
            ),
          RUNNING_NOTICE_MS,
        );

    const started = Date.now();
    let parts = 0;
    const emit =
      !isReply && wantsReply(method)
        ? (data: string) => this.sendPart(env, { data, exitCode: null }, undefined, ++parts, rerun)
        : undefined;
    let { output, error } = await this.runOnce(env, method, request, ac.signal, emit);

    // schedule [interval, total]: run again every interval until total has passed since the message arrived;
    // each run replies. After a restart, what is left of the schedule runs.
    if (!isReply && env.schedule) {
      const [interval, total] = env.schedule;
      const end = receivedAt + total * 1000;
      let next = receivedAt + interval * 1000 * Math.max(1, Math.ceil((Date.now() - receivedAt) / (interval * 1000)));
      while (next < end && !ac.signal.aborted) {
        this.sendPart(env, output, error, ++parts, rerun);
        await abortableSleep(next - Date.now(), ac.signal);
        if (ac.signal.aborted) break;
        ({ output, error } = await this.runOnce(env, method, request, ac.signal, emit));
        next += interval * 1000;
      }
    }
    clearTimeout(notice);
    if (this.closed && ac.signal.aborted) return; // Shutting down: it stays "running" and is re-run at next start.

    if (isReply && env.result?.partial) {
      // A part of a streamed or scheduled result: written by the reply method above; the request runs on.
      const requestId = env.requestId as string;
      await complete(() =>
        store.completeRun(env, undefined, () =>
          store.progress(requestId, { ...env.result, ...(env.data !== undefined && { data: env.data }) }),
        ),
      );
      if (error) log.warn("reply method failed on a streamed part", { id: env.id, requestId, reason: error });
      return;
    }
    if (isReply) {
      const requestId = env.requestId as string;
      const r = env.result;
      const failed = Boolean(r?.error) || error !== undefined;
      const reason = r?.error ?? (error ? `the reply arrived but ${error}` : null);
      await complete(() =>
        store.completeRun(env, undefined, () => {
          store.settle(requestId, failed ? "failed" : "done", {
            reason,
            exitCode: r?.exitCode ?? null,
            result: { ...r, ...(env.data !== undefined && { data: env.data }) },
          });
        }),
      );
      if (error) {
        log.warn("reply method failed", { id: env.id, requestId, reason: error });
        this.o.reportError({ toNode: this.o.nodeName, fromNode: env.fromNode, method, id: requestId, reason: error });
      }
      return;
    }

    const reply = wantsReply(method)
      ? this.buildReply(env, output, error, rerun, parts > 0 ? { seq: parts + 1, partial: false } : undefined)
      : undefined;
    await complete(() => store.completeRun(env, reply));
    if (reply) this.o.outbox.deliver({ envelope: reply, attempt: 0 });
    this.o.onExecuted?.(env, output, error, rerun, Date.now() - started);
    if (error) {
      log.warn("method failed", { id: env.id, method, fromNode: env.fromNode, reason: error });
      if (method !== "errorLog")
        this.o.reportError({ toNode: this.o.nodeName, fromNode: env.fromNode, method, id: env.id, reason: error });
    } else {
      log.debug("method done", { id: env.id, method, fromNode: env.fromNode, exitCode: output.exitCode });
    }
  }

  /**
   * A store write a message cannot go on without, resolved once it is on disk (store.durable()).
   * When that fails (disk full, say) it tries again every 2 s — the write itself again only if its
   * turn was rolled back — rather than leave the message half-done until the next start. On
   * shutdown it gives up; the message is then resumed at the next start.
   */
  private async persist(env: Envelope, write: () => void): Promise<void> {
    let written = false;
    for (;;) {
      try {
        if (!written) write();
        written = true;
        await this.o.store.durable();
        return;
      } catch (err) {
        if (err instanceof NotStored) throw err;
        // Rolled back (disk full at commit): write it again. A failed sync: the write stands, sync again.
        if (err instanceof StoreError && err.lost) written = false;
        if (this.closed) throw err;
        this.o.log.error("cannot store a message's progress; trying again", { id: env.id, reason: errorText(err) });
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  /** Run the method once, with its own methodTimeout; the node's shutdown (`signal`) aborts it too. */
  private async runOnce(
    env: Envelope,
    method: MethodName,
    request: Envelope | undefined,
    signal: AbortSignal,
    emit: ((data: string) => void) | undefined,
  ): Promise<{ output: MethodOutput; error: string | undefined }> {
    const run = new AbortController();
    const onShutdown = () => run.abort(signal.reason);
    signal.addEventListener("abort", onShutdown, { once: true });
    const timeout =
      env.methodTimeout >= 0
        ? setTimeout(
            () => run.abort(new Error(`method timed out after ${env.methodTimeout}s (methodTimeout)`)),
            env.methodTimeout * 1000,
          )
        : undefined;
    try {
      const output = await METHODS[method]({
        nodeName: this.o.nodeName,
        dataFolder: this.o.dataFolder,
        message: env,
        ...(request && { request }),
        // What the broker cannot carry in one reply is cut anyway: keep no more than that.
        maxOutput: Math.min(this.o.maxOutput, this.o.transport.maxPayload),
        signal: run.signal,
        log: this.o.log,
        subscribers: this.subscribers,
        onSpawn: (pgid) => {
          try {
            this.o.store.recordProcess(env, pgid, processStartTime(pgid));
          } catch (err) {
            // Only for ending a crash's leftovers: never worth failing the run (or losing its timeout) over.
            this.o.log.warn("cannot record a run's process group", { id: env.id, pgid, reason: errorText(err) });
          }
        },
        ...(emit && { emit }),
      });
      return { output, error: undefined };
    } catch (err) {
      const error = err instanceof MethodError ? err.message : `${method}: ${errorText(err)}`;
      return { output: (err as { output?: MethodOutput }).output ?? {}, error };
    } finally {
      clearTimeout(timeout);
      signal.removeEventListener("abort", onShutdown);
    }
  }

  /** Send one part of a streamed or scheduled result now, stored first like every reply. */
  private sendPart(env: Envelope, output: MethodOutput, error: string | undefined, seq: number, rerun: boolean): void {
    const part = this.buildReply(env, output, error, rerun, { seq, partial: true });
    const failed = (err: unknown) =>
      this.o.log.error("cannot store a part of a streamed result", { id: env.id, seq, reason: errorText(err) });
    try {
      // Sent once on disk, like every reply (parts of one run reach the disk, and so the outbox, in order).
      if (this.o.store.addOutgoing(part))
        this.o.store.durable().then(() => this.o.outbox.deliver({ envelope: part, attempt: 0 }), failed);
    } catch (err) {
      failed(err);
    }
  }

  private buildReply(
    env: Envelope,
    output: MethodOutput,
    error: string | undefined,
    rerun: boolean,
    part?: { seq: number; partial: boolean },
  ): Envelope {
    const result: MethodResult = {
      ...(part && { seq: part.seq, ...(part.partial && { partial: true }) }),
      exitCode: output.exitCode ?? (error ? null : 0),
      ...(output.stderr && { stderr: output.stderr }),
      ...(error && { error }),
      ...(rerun && { rerun: true }),
      ...(output.truncated && { truncated: output.truncated }),
    };
    const reply: Envelope = {
      id: newId(),
      toNode: env.fromNode,
      fromNode: this.o.nodeName,
      method: env.replyMethod,
      methodArgs: env.replyMethodArgs ?? [],
      replyMethod: "none",
      replyMethodArgs: [],
      ACKTimeout: env.replyACKTimeout,
      retries: env.replyRetries,
      retryWait: env.retryWait ?? 0,
      replyACKTimeout: 0,
      replyRetries: 0,
      methodTimeout: env.replyMethodTimeout,
      replyMethodTimeout: env.replyMethodTimeout,
      requestId: env.id,
      attempt: 0,
      result,
      ...(output.data !== undefined && output.data !== "" && { data: output.data }),
    };
    return fitPayload(reply, this.o.transport.maxPayload);
  }

  /** Abort every running method; a method that ignores its signal does not hold the shutdown past `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    for (const ac of this.running.values()) ac.abort(new Error("node shutting down"));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        if (this.tasks.size > 0)
          this.o.log.warn("stopping with methods still running; they run again at next start", {
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
 * When a process started (field 22 of /proc/<pid>/stat), so that a pid the
 * system has since reused is never taken for ours. Null where /proc is missing.
 */
function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Cut a reply's data so that it fits the broker's max_payload, and say how much was dropped. */
function fitPayload(reply: Envelope, maxPayload: number): Envelope {
  const room = maxPayload - 4096;
  const size = encode(reply).length;
  if (size <= room || reply.data === undefined) return reply;
  const data = Buffer.from(reply.data, "utf8");
  const keep = Math.max(0, data.length - (size - room) - 1024);
  const kept = data
    .subarray(0, keep)
    .toString("utf8")
    .replace(/\uFFFD$/, "");
  const dropped = data.length - Buffer.byteLength(kept);
  const result = { ...(reply.result as MethodResult), truncated: (reply.result?.truncated ?? 0) + dropped };
  return { ...reply, data: kept, result };
}

/**
 * Runs that start before the message is on disk: a reply (its run records the result; the request's
 * state shows it once) and the methods whose second run nobody could see (RUN_TWICE_HARMLESS).
 */
function startsEarly(env: Envelope, method: MethodName): boolean {
  return env.requestId !== undefined || RUN_TWICE_HARMLESS.includes(method);
}
