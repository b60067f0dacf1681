/**
 * Relay (docs/DELIVERY.md, "Relay"): a message for a node that only a relay node can reach travels in two
 * hops, and its reply back the same way. Each hop is a `_relay` frame, signed by the node that sends the
 * hop, carrying the frame its origin signed — unchanged, so that the target checks the origin's own
 * signature on the subject it was signed for:
 *
 *   origin ──<relay>._relay.<origin>──▶ relay: checks the origin's signature, that the origin chose it
 *     (relayViaNode) and that central's rules let the origin call that method on the target; stores it
 *     as one of its own outgoing messages (durable), then ACKs, then carries it with its outbox
 *   relay ──<target>._relay.<relay>──▶ target: takes the inner frame as if it came from the origin
 *     (verify, authorise the ORIGIN, store, run); its ACK goes back to the relay's outbox
 *   target's reply and its progress notices go back the same way (relayViaNode is copied to the reply)
 *
 * The relay tells the origin how its hop went (`relayed`, or why it could not carry it) with a notice;
 * the origin keeps it in the message's reason until the reply concludes it.
 */
import type { Msg } from "@nats-io/transport-node";
import type { Logger } from "../log.js";
import type { Envelope } from "../message/message.js";
import { canonicalMethod, CATALOG, type MethodName } from "../message/methods.js";
import { wireMessageProblem } from "../message/parse.js";
import { allows, notAllowed } from "../security/acl.js";
import { now } from "../security/clock.js";
import type { OutgoingRecord, Store } from "../store/store.js";
import type { SenderLimit } from "./senderLimit.js";
import { methodSubject, relaySubject, senderOf, stateSubject } from "./subjects.js";
import type { Transport } from "./transport.js";
import { type Ack, envelopeProblem, type Wire } from "./wire.js";

/** The body of a `_relay` frame: one hop of a frame another node signed. */
export interface RelayHop {
  /** The carried message's id (its ACK names it); absent for a notice, which is carried best effort. */
  id?: string;
  fromNode: string;
  toNode: string;
  /** The subject the carried frame was signed for: it names its target first and its signer last. */
  subject: string;
  /** The carried frame, base64, exactly as its signer sealed it. */
  frame: string;
}

/** What a relay tells a message's origin about its hop. */
export interface RelayNotice {
  id: string;
  state: "relayed" | "failed";
  toNode: string;
  reason?: string;
}

/** What the inbox handles: a message from the broker, or one a relay carried here (then `subject` is its own). */
export type Incoming = Pick<Msg, "subject" | "data" | "reply" | "respond">;

/**
 * The node a stored message goes to next, when not straight to its target: the relay it names (sent from its
 * origin, or a reply from its target), or, for a copy this node carries, its target through `_relay`.
 */
export function nextHop(message: Envelope, me: string): string | undefined {
  if (message.relayFrame !== undefined) return message.toNode;
  const via = message.relayViaNode;
  return via !== undefined && via !== me && via !== message.toNode ? via : undefined;
}

/** The `_relay` frame for one attempt of `message` (its deliverBy and attempt set) to `next`. */
export function sealHop(wire: Wire, message: Envelope, next: string): { subject: string; bytes: Uint8Array } {
  const me = wire.nodeName;
  let inner: string;
  let frame: string;
  if (message.relayFrame !== undefined) {
    inner = methodSubject(message.toNode, message.method, message.fromNode);
    frame = message.relayFrame;
  } else {
    inner = methodSubject(message.toNode, message.method, me);
    frame = Buffer.from(wire.seal(inner, message)).toString("base64");
  }
  const subject = relaySubject(next, me);
  const hop: RelayHop = { id: message.id, fromNode: me, toNode: next, subject: inner, frame };
  return { subject, bytes: wire.seal(subject, hop) };
}

/** A progress notice for a relayed message's origin, sent to the relay instead (best effort, as every notice). */
export function publishNotice(
  transport: Transport,
  wire: Wire,
  message: Envelope,
  body: unknown,
  origin = message.fromNode,
): void {
  const subject = stateSubject(origin, wire.nodeName);
  const next = message.relayViaNode;
  if (next === undefined || next === wire.nodeName) {
    transport.publish(subject, wire.seal(subject, body));
    return;
  }
  const frame = Buffer.from(wire.seal(subject, body)).toString("base64");
  const hop: RelayHop = { fromNode: wire.nodeName, toNode: next, subject, frame };
  const hopSubject = relaySubject(next, wire.nodeName);
  transport.publish(hopSubject, wire.seal(hopSubject, hop));
}

export interface RelayOptions {
  nodeName: string;
  store: Store;
  /** This node's outbox (its delivery task for a stored message). */
  outbox: { deliver(record: Pick<OutgoingRecord, "envelope" | "attempt">): void };
  transport: Transport;
  wire: Wire;
  log: Logger;
  /** A carried message for this node: handled as if it had come straight from its signer, relayed by `via`. */
  receive(incoming: Incoming, method: MethodName, via: string): void;
  /** A carried notice for this node. */
  notice(incoming: Incoming, via: string): void;
  /** Refuse a verified sender's hop: answered, logged and reported. */
  refuse(incoming: Incoming, signer: string, reason: string, value?: unknown): void;
  /** The inbox's share per signer (maxMessagesPerSender): what a relay stores counts as for its inbox. */
  limit: SenderLimit;
  /** A verified sender over its share: answered busy, nothing stored (its outbox sends it again later). */
  busy(incoming: Incoming, signer: string, value: unknown, ms: number): void;
}

export class Relay {
  constructor(private readonly opts: RelayOptions) {}

  /** A `_relay` frame arrived: for this node, or to carry on. */
  receive(msg: Incoming): void {
    const { wire, nodeName } = this.opts;
    const opened = wire.open(msg.subject, msg.data);
    if (!opened) return;
    const hop = opened.value as Partial<RelayHop> | null;
    const target = typeof hop?.subject === "string" ? hop.subject.split(".")[0] : undefined;
    if (
      !hop ||
      typeof hop.frame !== "string" ||
      typeof hop.subject !== "string" ||
      hop.fromNode !== opened.signer ||
      hop.toNode !== nodeName ||
      senderOf(hop.subject) === undefined ||
      (hop.id !== undefined && typeof hop.id !== "string")
    ) {
      wire.drop(msg.subject, opened.signer, "bad relay hop", "not a relay hop for this node");
      return;
    }
    const data = Buffer.from(hop.frame, "base64");
    const carried: Incoming = {
      subject: hop.subject,
      data,
      reply: msg.reply,
      respond: (payload) => msg.respond(payload),
    };
    const kind = hop.subject.split(".")[1] ?? "";
    if (target === nodeName) {
      if (kind === "_state") this.opts.notice(carried, opened.signer);
      else {
        const method = canonicalMethod(kind);
        if (method) this.opts.receive(carried, method, opened.signer);
        else wire.drop(msg.subject, opened.signer, "bad relay hop", `carries a frame for unknown method ${kind}`);
      }
      return;
    }
    if (kind === "_state") {
      this.carryNotice(hop as RelayHop, data, opened.signer);
      return;
    }
    this.carry(msg, hop as RelayHop, data, opened.signer);
  }

  /** A notice for a node beyond this one: passed on once, checked first (best effort, as every notice). */
  private carryNotice(hop: RelayHop, data: Uint8Array, signer: string): void {
    const { wire, transport, nodeName } = this.opts;
    if (!wire.open(hop.subject, data)) return;
    const target = hop.subject.split(".")[0] as string;
    const next: RelayHop = { fromNode: nodeName, toNode: target, subject: hop.subject, frame: hop.frame };
    const subject = relaySubject(target, nodeName);
    transport.publish(subject, wire.seal(subject, next));
    this.opts.log.debug("carried a notice", { subject: hop.subject, from: signer });
  }

  /** A message for a node beyond this one: checked, stored as one of this node's own, ACKed, then carried. */
  private carry(msg: Incoming, hop: RelayHop, data: Uint8Array, signer: string): void {
    const { wire, store, nodeName, log } = this.opts;
    // Stored here as the inbox would store it: within the hop's signer's share, or it is told to come back later.
    const busyMs = this.opts.limit.take(signer);
    if (busyMs !== undefined) {
      this.opts.busy(msg, signer, { id: hop.id }, busyMs);
      return;
    }
    // The origin's signature on the subject it signed for: a frame changed on the way is dropped here.
    const inner = wire.open(hop.subject, data);
    if (!inner) return;
    const message = inner.value as Envelope;
    const problem = envelopeProblem(message) ?? wireMessageProblem(message);
    const refused =
      problem !== undefined
        ? `bad message: ${problem}`
        : message.fromNode !== inner.signer || message.id !== hop.id
          ? `a relay hop must carry the message its signer sent, under its own id`
          : message.relayViaNode !== nodeName
            ? `${inner.signer} did not ask ${nodeName} to relay this message (relayViaNode)`
            : now() > message.deliverBy
              ? `expired: not delivered by ${new Date(message.deliverBy).toISOString()}`
              : this.refusedByRules(message);
    if (refused) {
      this.opts.refuse(msg, signer, refused, message);
      return;
    }
    // Hop 2 always waits for the target's ACK (10 s when the origin sent it fire and forget): a copy sent
    // without one would stay "sent" here, and be sent again at every start of this node until it expired.
    const copy: Envelope = {
      ...message,
      relayFrame: hop.frame,
      ...(message.ACKTimeout <= 0 && { ACKTimeout: 10 }),
    };
    let fresh: boolean;
    try {
      fresh = store.outgoing.add(copy);
    } catch (err) {
      log.error("cannot store a message to relay; not ACKing it", { id: message.id, reason: (err as Error).message });
      return;
    }
    if (!fresh) {
      // Copies share this node's outgoing ids with its own messages: only a re-send of the copy stored is
      // ACKed again; an id another message holds here (this node's own, another origin's) is never carried.
      const stored = store.outgoing.get(message.id)?.envelope;
      if (
        stored?.relayFrame === undefined ||
        stored.fromNode !== message.fromNode ||
        stored.toNode !== message.toNode ||
        stored.method !== message.method
      ) {
        this.opts.refuse(
          msg,
          signer,
          `id ${message.id} already used here by another message; send it with a new id`,
          message,
        );
        return;
      }
      log.debug("a message relayed already, ACKed again", { id: message.id, fromNode: signer });
    }
    store.durable().then(
      () => {
        if (msg.reply) msg.respond(wire.seal(msg.reply, { ack: message.id } satisfies Ack));
        if (fresh) {
          log.info("relaying a message", { id: message.id, fromNode: message.fromNode, toNode: message.toNode });
          this.opts.outbox.deliver({ envelope: copy, attempt: 0 });
        }
      },
      (err: unknown) =>
        log.error("a message to relay is not confirmed on disk; not ACKing it", {
          id: message.id,
          reason: (err as Error).message,
        }),
    );
  }

  /**
   * A request is carried only when central's rules let its origin call that method on its target. A reply is
   * checked by the origin (it answers a request of its own), a cancel by the target (its signer's own messages).
   */
  private refusedByRules(message: Envelope): string | undefined {
    const method = canonicalMethod(message.method) as MethodName;
    if (message.requestId !== undefined || CATALOG[method].cancels) return undefined;
    const { trust } = this.opts.wire;
    return allows(trust.acl, trust.member(message.fromNode), method, trust.member(message.toNode), message.methodArgs)
      ? undefined
      : notAllowed(message.fromNode, method, message.toNode);
  }

  /** This node's outbox ended a copy it carried: tell the message's origin (a request's; a reply's has no need). */
  carried(message: Envelope, failure?: string): void {
    if (message.relayFrame === undefined || message.requestId !== undefined) return;
    const { transport, wire } = this.opts;
    const notice: RelayNotice = {
      id: message.id,
      state: failure === undefined ? "relayed" : "failed",
      toNode: message.toNode,
      ...(failure !== undefined && { reason: failure }),
    };
    const subject = stateSubject(message.fromNode, wire.nodeName);
    transport.publish(subject, wire.seal(subject, notice));
  }

  /** On the origin: the relay's word on its hop, believed only from the relay the message names. */
  onNotice(rec: OutgoingRecord, signer: string, notice: Partial<RelayNotice>): void {
    const { store } = this.opts;
    if (rec.envelope.relayViaNode !== signer || notice.toNode !== rec.toNode) return;
    if (notice.state === "relayed") store.outgoing.noteHop(rec.id, `relayed by ${signer}: ${rec.toNode} has it`);
    else if (notice.state === "failed")
      store.outgoing.moveToFinal(rec.id, "failed", {
        reason: `relayed by ${signer}, which could not deliver it: ${String(notice.reason)}`,
      });
  }
}
