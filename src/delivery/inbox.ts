/**
 * The subscriber side: receiving. A message arrives on <thisNode>.<method>.<sender>
 * and goes, top to bottom:
 *
 *   verify     signed by an admitted key                                          ── else dropped, unanswered
 *   limit      within its signer's share (senderLimit.ts) ── else answered busy: re-sent later, no retry spent
 *   check      a JSON envelope, from the node that signed it (else dropped),      ─┐
 *              addressed to this node, on its method's subject, its fields as     │
 *              this node's own input checks them, not past deliverBy (nor runBy)  │
 *   authorise  a request: central's rules allow it (methodTimeout -1 too), and the  ├─ else refused (signed): the
 *              local allowedNodes; a reply: it answers a request of ours to its     │  sender never retries
 *              signer (replies.ts)                                                 ─┘
 *   store      in the inbox table, keyed by (fromNode, id); already there = a re-send: ACK again, never run again
 *   run        handed to the runner (runner.ts): at once, or in turn when maxConcurrentRuns are running
 *   ACK        signed, with the message's own id, once it is on disk (store.durable())
 *
 * A cancel (`steward cancel` on its sender) is checked like a request, needs no rule of central's (it acts
 * on its signer's own messages only, keyed (fromNode, id)), is applied, never stored or run, and ACKed once
 * what it did is on disk: a message of that sender not run yet is not run, a running one is ended
 * (runner.ts); one not here yet leaves a tombstone, so that it is ACKed and not run when it arrives.
 * A hello is a heartbeat: handed to the node (central admits keys from it), never stored or run. The
 * "waiting" and "running" notices of the nodes running our requests arrive here too, on <thisNode>._state.<node>.
 * A message larger than the broker's max_payload comes in chunks (chunkInbox.ts), and once whole goes the same way.
 */
import type { Msg } from "@nats-io/transport-node";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { canonicalMethod, CATALOG, type MethodName } from "../message/methods.js";
import { wireMessageProblem } from "../message/parse.js";
import type { AllowedNodes } from "../methods/method.js";
import { allows, allowsNoTimeLimit, notAllowed, notAllowedUnlimited } from "../security/acl.js";
import { now } from "../security/clock.js";
import type { CancelOutcome, Store } from "../store/store.js";
import { ChunkInbox } from "./chunkInbox.js";
import { grantProblem } from "./copyGrant.js";
import type { Busy, Outbox } from "./outbox.js";
import { type Incoming, Relay, type RelayNotice } from "./relay.js";
import { Replies } from "./replies.js";
import { runByPassed, Runner, type RunnerOptions, type RunNotice } from "./runner.js";
import { SenderLimit } from "./senderLimit.js";
import { methodOf, relaySubscription, stateSubscription } from "./subjects.js";
import { Subscribers } from "./subscribers.js";
import type { Transport } from "./transport.js";
import { type Ack, envelopeProblem, type Wire } from "./wire.js";

export interface InboxOptions {
  nodeName: string;
  /** Central may ask for runs without a time limit (methodTimeout -1); others need a rule that says so. */
  centralNodeName?: string;
  dataFolder: string;
  /** The subscribers to start: method → the nodes allowed to use it (a method left out gets none). */
  allowedNodes: Partial<Record<MethodName, AllowedNodes>>;
  /** Most bytes of a method's output to keep, and of a message taken in chunks (maxMessageSize). */
  maxOutput: number;
  /** Where the chunks of messages larger than max_payload wait until they are complete. */
  chunkFolder: string;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  wire: Wire;
  /** Seconds a reply may take to reach its origin: its deliverBy. */
  maxMessageAge: number;
  log: Logger;
  /** An error worth central's error log. */
  reportError(report: ErrorReport): void;
  /** A hello arrived, unverified (central admits new keys from hellos); its id when it was genuine. */
  onHello(subject: string, bytes: Uint8Array): string | undefined;
  /** A message was refused here: the audit log. */
  onRefused?(message: Partial<Envelope>, signer: string, reason: string): void;
  /** A method ran here (not a reply), once per message: metrics and the audit log. */
  onExecuted?: RunnerOptions["onExecuted"];
  /** Most runs at once (maxConcurrentRuns); the rest wait in arrival order. Absent: no limit. */
  maxConcurrentRuns?: number;
  /** Seconds a graceful stop lets runs in progress finish (stopGracePeriod). Absent: 0. */
  stopGracePeriod?: number;
  /** The longest methodTimeout another node may ask for without the right to no limit. Absent: any. */
  maxMethodTimeout?: number;
  /** Messages a second one signer may have stored here, and how many at once. Absent or 0: no limit. */
  maxMessagesPerSender?: number;
  maxMessagesPerSenderBurst?: number;
  /** A message was answered "busy" (its signer is over maxMessagesPerSender): metrics. */
  onBusy?(signer: string): void;
}

export class Inbox {
  readonly subscribers: Subscribers;
  readonly relay: Relay;
  private readonly replies: Replies;
  private readonly runner: Runner;
  private readonly limit: SenderLimit;
  readonly chunks: ChunkInbox;

  constructor(private readonly opts: InboxOptions) {
    this.limit = new SenderLimit(opts.maxMessagesPerSender ?? 0, opts.maxMessagesPerSenderBurst ?? 1);
    this.subscribers = new Subscribers(opts.nodeName, opts.transport, (msg, method) => this.onMessage(msg, method));
    this.replies = new Replies(opts);
    this.chunks = new ChunkInbox({
      ...opts,
      folder: opts.chunkFolder,
      maxMessageSize: opts.maxOutput,
      serves: (method) => this.subscribers.list().some((s) => s.method === method),
      deliver: (msg, method) => this.onMessage(msg, method),
    });
    this.relay = new Relay({
      ...opts,
      receive: (incoming, method, via) => this.receive(incoming, method, via),
      notice: (incoming, via) => this.onNotice(incoming, via),
      refuse: (incoming, signer, reason, value) => this.refuse(incoming, signer, reason, value),
      limit: this.limit,
      busy: (incoming, signer, value, ms) => this.busy(incoming, signer, value, ms),
    });
    this.runner = new Runner({
      ...opts,
      subscribers: this.subscribers,
      replies: this.replies,
      stillAllowed: (message) => this.refusedByCentral(message),
    });
  }

  /** Subscribe to this node's subjects. Safe before the broker is reachable. */
  start(): void {
    const { transport, nodeName } = this.opts;
    for (const [method, allowed] of Object.entries(this.opts.allowedNodes)) {
      if (allowed) this.subscribers.start(method as MethodName, allowed);
    }
    transport.subscribe(stateSubscription(nodeName), (msg) => this.onNotice(msg));
    this.chunks.start();
    transport.subscribe(relaySubscription(nodeName), (msg) => {
      try {
        this.relay.receive(msg);
      } catch (err) {
        this.opts.log.error("could not handle a relay hop", { subject: msg.subject, reason: errorText(err) });
      }
    });
  }

  /** Central's bundle changed: stop what a sender may no longer have run here (a key revoked, a rule removed). */
  recheck(): void {
    this.runner.recheck();
  }

  /** Why central's keys and rules no longer let a stored request's sender have it run here, if they do not. */
  private refusedByCentral(message: Envelope): string | undefined {
    const { trust } = this.opts.wire;
    const { nodeName } = this.opts;
    if (!trust.admitted(message.fromNode)) return `not allowed: ${message.fromNode} is no longer admitted by central`;
    const method = canonicalMethod(message.method) as MethodName;
    // Let in for the copy its operator asked for, by what that operator may do here (copyGrant.ts).
    if (CATALOG[method].granted) return grantProblem(trust, message, nodeName, this.opts.centralNodeName);
    const caller = trust.member(message.fromNode);
    if (!allows(trust.acl, caller, method, trust.member(nodeName), message.methodArgs))
      return notAllowed(message.fromNode, method, nodeName);
    // No time limit ties up a run slot and its processes for good: only central, the node itself (its own
    // operator's messages), or a rule that says `unlimited` may ask for it.
    // A time limit of weeks is as good as none: above maxMethodTimeout it needs the same right.
    const most = this.opts.maxMethodTimeout;
    const long = most !== undefined && message.methodTimeout > most;
    if (
      (message.methodTimeout < 0 || long) &&
      message.fromNode !== nodeName &&
      message.fromNode !== this.opts.centralNodeName &&
      !allowsNoTimeLimit(trust.acl, caller, method, trust.member(nodeName), message.methodArgs)
    )
      return notAllowedUnlimited(message.fromNode, method, nodeName, long ? most : undefined);
    return undefined;
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

  /** `via`: the relay that carried it here (relay.ts); the message's origin must have named it. */
  private receive(msg: Incoming, method: MethodName, via?: string): void {
    const { store, nodeName, log, wire } = this.opts;
    if (CATALOG[method].heartbeat) {
      // Hellos are heartbeats: recorded, never stored or run as messages. One sent as a message wants its ACK.
      const id = this.opts.onHello(msg.subject, msg.data);
      if (id !== undefined) this.answer(msg, { ack: id });
      return;
    }
    // Verify, before anything else is read.
    const opened = wire.open(msg.subject, msg.data);
    if (!opened) return;
    const { signer, value } = opened;

    // Limit, before anything is logged, audited or stored for it: over its share, nothing is kept, and the
    // sender is told when to try again.
    const busyMs = this.limit.take(signer);
    if (busyMs !== undefined) {
      this.busy(msg, signer, value, busyMs);
      return;
    }

    // Check.
    const problem = envelopeProblem(value);
    if (problem) {
      this.refuse(msg, signer, `bad message: ${problem}`, value);
      return;
    }
    const message = value as Envelope;
    if (message.fromNode !== signer) {
      wire.drop(msg.subject, signer, "wrong signer", `signed by ${signer} but claims to come from ${message.fromNode}`);
      return;
    }
    if (via !== undefined && message.relayViaNode !== via) {
      this.refuse(msg, signer, `${signer} did not ask ${via} to relay this message (relayViaNode)`, message);
      return;
    }
    const misaddressed =
      message.toNode !== nodeName
        ? `message for ${message.toNode} arrived at ${nodeName}`
        : canonicalMethod(message.method) !== method
          ? `method ${message.method} sent on the subject of ${method}`
          : undefined;
    if (misaddressed) {
      this.refuse(msg, signer, misaddressed, message);
      return;
    }
    const fieldProblem = wireMessageProblem(message);
    if (fieldProblem) {
      this.refuse(msg, signer, `bad message: ${fieldProblem}`, message);
      return;
    }
    if (now() > message.deliverBy) {
      this.refuse(msg, signer, `expired: not delivered by ${new Date(message.deliverBy).toISOString()}`, message);
      return;
    }
    // Too late to run: refused as expired, unless it is a re-send of one stored in time (that one is ACKed again).
    const late = runByPassed(message);
    if (late && !store.incoming.get(message.fromNode, message.id)) {
      this.refuse(msg, signer, late, message);
      return;
    }

    if (CATALOG[method].cancels && message.requestId === undefined) {
      this.cancel(msg, signer, message);
      return;
    }

    // Authorise.
    let request: Envelope | undefined;
    if (message.requestId === undefined) {
      const refused = this.refusedByCentral(message);
      if (refused) {
        this.refuse(msg, signer, refused, message);
        return;
      }
      if (!this.subscribers.allows(method, signer)) {
        this.refuse(msg, signer, `${signer} is not allowed to use ${method} on ${nodeName} (allowedNodes)`, message);
        return;
      }
    } else {
      const answered = this.replies.requestAnswered(message, method);
      if ("refused" in answered) {
        this.refuse(msg, signer, answered.refused, message);
        return;
      }
      request = answered.request;
      // A reply runs with the time limit its request asked for: a replier cannot lift it.
      if (message.methodTimeout < 0 && request.replyMethodTimeout >= 0) {
        this.refuse(msg, signer, notAllowedUnlimited(signer, method, nodeName), message);
        return;
      }
    }

    // Store.
    let fresh: boolean;
    try {
      fresh = store.incoming.add(message, CATALOG[method].keepsFrame ? msg.data : undefined);
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
      () => this.answer(msg, { ack: message.id }),
      // Not ACKed: the sender re-sends. If the turn was rolled back, the task finds its message gone and does not run it.
      (err: unknown) =>
        log.error("a received message is not confirmed on disk; not ACKing it", {
          id: message.id,
          reason: errorText(err),
        }),
    );
  }

  /** `signer` cancels its own message methodArgs[0] here: applied, on disk, then ACKed. */
  private cancel(msg: Incoming, signer: string, message: Envelope): void {
    const { store, log, nodeName } = this.opts;
    if (!this.subscribers.allows("cancel", signer)) {
      this.refuse(msg, signer, `${signer} is not allowed to use cancel on ${nodeName} (allowedNodes)`, message);
      return;
    }
    const [id = "", by = signer] = message.methodArgs;
    const reason = `cancelled by ${by}`;
    let outcome: CancelOutcome;
    try {
      outcome = store.incoming.cancel(signer, id, reason, message.deliverBy);
    } catch (err) {
      log.error("cannot store a cancel; not ACKing it", { id, fromNode: signer, reason: errorText(err) });
      return;
    }
    if (outcome === "cancelled") this.runner.cancel(signer, id, reason);
    // Not here yet: perhaps partly, in chunks.
    if (outcome === "tombstone") this.chunks.forget(signer, id);
    log.info(
      outcome === "cancelled"
        ? "cancel: the message is not run, or its run is ended"
        : outcome === "finished"
          ? "cancel: the message had finished already; its result stands"
          : "cancel: the message is not here; if it comes, it is ACKed and not run",
      { id, fromNode: signer, by },
    );
    store.durable().then(
      () => this.answer(msg, { ack: message.id }),
      (err: unknown) => log.error("a cancel is not confirmed on disk; not ACKing it", { id, reason: errorText(err) }),
    );
  }

  /** The ACK, refusal or busy answer, signed for the sender's reply inbox (so it answers that one request only). */
  private answer(msg: Incoming, ack: Ack | Busy): void {
    if (msg.reply) msg.respond(this.opts.wire.seal(msg.reply, ack));
  }

  /** A verified sender over its share: nothing is kept; its outbox sends the message again in `ms`. */
  private busy(msg: Incoming, signer: string, value: unknown, ms: number): void {
    const id = (value as Partial<Envelope> | null)?.id;
    this.opts.onBusy?.(signer);
    this.opts.log.debug("busy: a sender over maxMessagesPerSender is told to re-send later", { id, signer, ms });
    this.answer(msg, { busy: ms, id: typeof id === "string" ? id : "" });
  }

  /** Refuse a verified sender's message: it is answered (never retried), logged, audited and reported. */
  private refuse(msg: Incoming, signer: string, reason: string, value?: unknown): void {
    const message = (value ?? {}) as Partial<Envelope>;
    const id = typeof message.id === "string" ? message.id : undefined;
    this.opts.log.warn("refused a message", { subject: msg.subject, id, signer, reason });
    this.answer(msg, { refused: reason, ...(id !== undefined && { id }) });
    this.opts.onRefused?.(message, signer, reason);
    this.opts.reportError({
      toNode: this.opts.nodeName,
      fromNode: signer,
      method: methodOf(msg.subject),
      ...(id !== undefined && { id }),
      reason,
    });
  }

  /** A node running one of our requests says it runs, or waits for a free run: believed only from that node. */
  private onNotice(msg: Incoming, via?: string): void {
    const opened = this.opts.wire.open(msg.subject, msg.data);
    if (!opened) return;
    const notice = opened.value as Partial<RunNotice | RelayNotice> | null;
    if (typeof notice?.id !== "string") return;
    const rec = this.opts.store.outgoing.get(notice.id);
    if (!rec) return;
    // Its relay's word on its hop (relay.ts).
    if (via === undefined && rec.toNode !== opened.signer && rec.envelope.relayViaNode === opened.signer) {
      this.relay.onNotice(rec, opened.signer, notice as Partial<RelayNotice>);
      return;
    }
    if (notice.state !== "running" && notice.state !== "waiting") return;
    if (rec.toNode !== opened.signer) {
      this.opts.wire.drop(msg.subject, opened.signer, "wrong signer", `notice for a message to ${rec.toNode}`);
      return;
    }
    // Best effort by design: the reply settles the state anyway.
    if (notice.state === "waiting") this.opts.store.outgoing.moveToWaiting(notice.id);
    else this.opts.store.outgoing.moveToRunning(notice.id);
  }

  /** Abort every running method; a method that ignores its signal does not hold the shutdown past `graceMs`. */
  close(graceMs = 5000): Promise<void> {
    this.chunks.close();
    return this.runner.close(graceMs);
  }
}
