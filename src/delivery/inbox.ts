/**
 * The subscriber side: receiving. A message arrives on <thisNode>.<method>
 * and goes, top to bottom:
 *
 *   check      a JSON envelope, addressed to this node, on its method's subject   ─┐
 *   authorise  a request: its sender is in the method's allowedNodes;               ├─ else refused: the
 *              a reply: it answers a request of ours (replies.ts)                  ─┘  sender never retries
 *   store      in the inbox table, keyed by (fromNode, id); already there = a re-send: ACK again, never run again
 *   run        handed to the runner (runner.ts), which starts at once
 *   ACK        with the message's own id, once it is on disk (store.durable())
 *
 * A hello is a heartbeat: recorded, never stored or run. The origin's
 * "running" notices arrive here too, on <thisNode>._state.
 */
import type { Msg } from "@nats-io/transport-node";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { canonicalMethod, CATALOG, type MethodName } from "../message/methods.js";
import type { AllowedNodes } from "../methods/method.js";
import type { Store } from "../store/store.js";
import type { Outbox } from "./outbox.js";
import { Replies } from "./replies.js";
import { Runner, type RunnerOptions } from "./runner.js";
import { stateSubject } from "./subjects.js";
import { Subscribers } from "./subscribers.js";
import type { Transport } from "./transport.js";
import { type Ack, decodeJson, encode, envelopeProblem, type StateNotice } from "./wire.js";

export interface InboxOptions {
  nodeName: string;
  dataFolder: string;
  /** The subscribers to start: method → the nodes allowed to use it (a method left out gets none). */
  allowedNodes: Partial<Record<MethodName, AllowedNodes>>;
  /** Most bytes of a method's output to keep (maxMessageSize). */
  maxOutput: number;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  log: Logger;
  /** An error worth central's error log. */
  reportError(report: ErrorReport): void;
  /** A node said hello (central). */
  onHello(node: string): void;
  /** A method ran here (not a reply), once per message: metrics and the audit log. */
  onExecuted?: RunnerOptions["onExecuted"];
}

export class Inbox {
  readonly subscribers: Subscribers;
  private readonly replies: Replies;
  private readonly runner: Runner;

  constructor(private readonly opts: InboxOptions) {
    this.subscribers = new Subscribers(opts.nodeName, opts.transport, (msg, method) => this.onMessage(msg, method));
    this.replies = new Replies(opts);
    this.runner = new Runner({ ...opts, subscribers: this.subscribers, replies: this.replies });
  }

  /** Subscribe to this node's subjects. Safe before the broker is reachable. */
  start(): void {
    const { transport, nodeName } = this.opts;
    for (const [method, allowed] of Object.entries(this.opts.allowedNodes)) {
      if (allowed) this.subscribers.start(method as MethodName, allowed);
    }
    transport.subscribe(stateSubject(nodeName), (msg) => this.onNotice(msg));
  }

  /** Run every received message that did not finish before the last stop; returns how many. */
  resume(): number {
    return this.runner.resume();
  }

  private onMessage(msg: Msg, method: MethodName): void {
    try {
      this.receive(msg, method);
    } catch (err) {
      // Whatever a peer sends, the node stays up.
      this.opts.log.error("could not handle a received message", { subject: msg.subject, reason: errorText(err) });
    }
  }

  private receive(msg: Msg, method: MethodName): void {
    const { store, nodeName, log } = this.opts;
    // Check.
    let message: Envelope;
    try {
      const value = decodeJson(msg.data);
      const problem = envelopeProblem(value);
      if (problem) {
        this.refuse(msg, `bad message: ${problem}`, value);
        return;
      }
      message = value as Envelope;
    } catch {
      this.refuse(msg, "bad message: not JSON");
      return;
    }
    const misaddressed =
      message.toNode !== nodeName
        ? `message for ${message.toNode} arrived at ${nodeName}`
        : canonicalMethod(message.method) !== method
          ? `method ${message.method} sent on the subject of ${method}`
          : undefined;
    if (misaddressed) {
      this.refuse(msg, misaddressed, message);
      return;
    }

    // Authorise.
    if (message.requestId === undefined && !this.subscribers.allows(method, message.fromNode)) {
      this.refuse(msg, `${message.fromNode} is not allowed to use ${method} on ${nodeName} (allowedNodes)`, message);
      return;
    }
    if (CATALOG[method].heartbeat) {
      // Hellos are heartbeats: recorded, never stored or run as messages. One sent as a message wants its ACK.
      this.opts.onHello(message.fromNode);
      if (msg.reply) msg.respond(encode({ ack: message.id } satisfies Ack));
      return;
    }
    let request: Envelope | undefined;
    if (message.requestId !== undefined) {
      const answered = this.replies.requestAnswered(message, method);
      if ("refused" in answered) {
        this.refuse(msg, answered.refused, message);
        return;
      }
      request = answered.request;
    }

    // Store.
    let fresh: boolean;
    try {
      fresh = store.incoming.add(message);
    } catch (err) {
      // Not stored, so no ACK: the sender will re-send, and we may have disk space by then.
      log.error("cannot store a received message; not ACKing it", { id: message.id, reason: errorText(err) });
      return;
    }
    if (!fresh)
      log.debug("duplicate message ACKed again, not run again", { id: message.id, fromNode: message.fromNode });

    // Run. Its task starts now and writes the run's start in this same turn, so that one disk sync covers
    // the message and its start; the run itself waits for that sync (see runner.ts).
    // Stored: run it whatever happens to the ACK (a failed respond must not strand it until restart).
    if (fresh) this.runner.startTask(message, false, Date.now(), request);

    // ACK, only once it is on disk; a duplicate's first copy may still be on its way there.
    store.durable().then(
      () => {
        if (msg.reply) msg.respond(encode({ ack: message.id } satisfies Ack));
      },
      // Not ACKed: the sender re-sends. If the turn was rolled back, the task finds its message gone and does not run it.
      (err: unknown) =>
        log.error("a received message is not confirmed on disk; not ACKing it", {
          id: message.id,
          reason: errorText(err),
        }),
    );
  }

  private refuse(msg: Msg, reason: string, value?: unknown): void {
    const id = (value as Partial<Envelope> | undefined)?.id;
    const fromNode = (value as Partial<Envelope> | undefined)?.fromNode;
    this.opts.log.warn("refused a message", { subject: msg.subject, id, fromNode, reason });
    if (msg.reply) msg.respond(encode({ refused: reason, ...(typeof id === "string" && { id }) } satisfies Ack));
    if (typeof fromNode === "string") {
      this.opts.reportError({
        toNode: this.opts.nodeName,
        fromNode,
        method: msg.subject.split(".")[1] ?? "?",
        ...(typeof id === "string" && { id }),
        reason,
      });
    }
  }

  /** A node running one of our requests says it runs. */
  private onNotice(msg: Msg): void {
    try {
      const notice = decodeJson(msg.data) as StateNotice;
      if (notice.state === "running" && typeof notice.id === "string")
        this.opts.store.outgoing.moveToRunning(notice.id);
    } catch {
      // Best effort by design: the reply settles the state anyway.
    }
  }

  /** Abort every running method; a method that ignores its signal does not hold the shutdown past `graceMs`. */
  close(graceMs = 5000): Promise<void> {
    return this.runner.close(graceMs);
  }
}
