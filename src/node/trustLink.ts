/**
 * Every node's side of trust on the broker: taking central's bundles,
 * announcing itself (`_online`) and checking the hellos that reach it.
 *
 * A new bundle may admit a node whose messages this node dropped a moment
 * ago (it did not know the key yet): taking it announces `_online`, so that
 * such senders re-send at once instead of at their next retry.
 */
import type { Rejects } from "../delivery/rejects.js";
import { bundleBroadcast, bundleSubject, onlineSubject, senderOf } from "../delivery/subjects.js";
import type { Transport } from "../delivery/transport.js";
import type { Presence, Wire } from "../delivery/wire.js";
import { envelopeProblem } from "../delivery/wire.js";
import type { Logger } from "../log.js";
import type { Labels } from "../message/labels.js";
import type { Envelope } from "../message/message.js";
import { now } from "../security/clock.js";
import { readHeader, verifyHeader } from "../security/frame.js";
import { parsePublicKey } from "../security/identity.js";
import type { Trust } from "../security/trust.js";

/** What a hello carries in its `data`, as JSON. */
export interface HelloData {
  /** The sender's public key: how central learns a new node's key. */
  publicKey: string;
  /** The version of central's bundle the sender holds (0: none yet). */
  bundle: number;
  /** When it was sent (ms, the sender's clock): only goes up, so a replayed hello is ignored. */
  at: number;
  /** The labels the node announces (its `labels` setting); central's own for the same key win (src/node/admission.ts). */
  labels?: Labels;
}

export interface Hello {
  id: string;
  node: string;
  /** What the node's own hellos carry; a hello written by an operator (a seed example) has none. */
  data: HelloData | undefined;
  /** Newer than the last hello of that node: a replay (or one out of order) is not fresh, and wakes nothing. */
  fresh: boolean;
}

export interface TrustLinkOptions {
  trust: Trust;
  wire: Wire;
  rejects: Rejects;
  transport: Transport;
  log: Logger;
  /** This node's `labels` setting, announced in every hello. */
  labels: Labels;
}

export class TrustLink {
  private lastHello = new Map<string, number>();
  private helloIds = new Set<string>();
  private lastAt = 0;

  constructor(private readonly opts: TrustLinkOptions) {}

  /** Listen for central's bundles. */
  start(): void {
    const { transport, trust } = this.opts;
    const take = (subject: string, bytes: Uint8Array) => this.offer(subject, bytes);
    transport.subscribe(bundleSubject(trust.identity.name, trust.centralName), (msg) => take(msg.subject, msg.data));
    transport.subscribe(bundleBroadcast(trust.centralName), (msg) => take(msg.subject, msg.data));
    trust.onBundle(() => this.announce());
  }

  private offer(subject: string, bytes: Uint8Array): void {
    const { trust, log, rejects } = this.opts;
    const offer = trust.offer(bytes);
    if (offer.taken) {
      const b = offer.bundle;
      log.info("took central's bundle", {
        version: b.version,
        admitted: Object.keys(b.nodes).length,
        rules: b.acl.rules.length,
      });
    } else if (!offer.stale) {
      rejects.drop(subject, readHeader(bytes)?.signer, "bad bundle", offer.reason);
    }
  }

  /** `_online.<self>`: senders with messages waiting for this node send them now. */
  announce(): void {
    const { transport, wire, trust } = this.opts;
    const subject = onlineSubject(trust.identity.name);
    this.lastAt = Math.max(Date.now(), this.lastAt + 1);
    transport.publish(subject, wire.seal(subject, { node: trust.identity.name, at: this.lastAt } satisfies Presence));
  }

  /** What this node's hellos carry. */
  helloData(): HelloData {
    this.lastAt = Math.max(Date.now(), this.lastAt + 1);
    const { trust, labels } = this.opts;
    return { publicKey: trust.identity.publicKey, bundle: trust.version, at: this.lastAt, labels };
  }

  /**
   * Check a hello that arrived on `subject`: signed by the node it names, newer than its last. Central also
   * takes a hello from a node it holds no key for, checked against the key the hello itself carries (so the
   * sender holds that key): that is how a new node's key reaches central's approval list.
   */
  checkHello(subject: string, bytes: Uint8Array): Hello | undefined {
    const { trust, rejects } = this.opts;
    const header = readHeader(bytes);
    if (!header) {
      rejects.drop(subject, undefined, "unsigned", "not a signed frame");
      return undefined;
    }
    let key = trust.keyOf(header.signer);
    let value: unknown;
    if (!key && trust.isCentral) {
      value = parse(header.body);
      const claimed = (parse((value as Partial<Envelope> | undefined)?.data) as Partial<HelloData> | undefined)
        ?.publicKey;
      key = typeof claimed === "string" ? parsePublicKey(claimed) : undefined;
    }
    const opened = verifyHeader(header, subject, key);
    if (opened.ok && senderOf(subject) !== header.signer) {
      rejects.drop(
        subject,
        header.signer,
        "wrong signer",
        `signed by ${header.signer} on a subject that names another`,
      );
      return undefined;
    }
    if (!opened.ok) {
      rejects.drop(subject, opened.signer, opened.kind, opened.problem);
      return undefined;
    }
    value ??= parse(opened.body);
    const hello = value as Envelope;
    const raw = parse(hello?.data) as Partial<HelloData> | undefined;
    const data =
      typeof raw?.publicKey === "string" && typeof raw.bundle === "number" && typeof raw.at === "number"
        ? (raw as HelloData)
        : undefined;
    const problem =
      envelopeProblem(value) ??
      (hello.fromNode !== header.signer ? `signed by ${header.signer} but claims ${hello.fromNode}` : undefined) ??
      (now() > hello.deliverBy ? "expired" : undefined) ??
      (!data && !trust.admitted(header.signer) ? "a new node's hello must carry {publicKey, bundle, at}" : undefined);
    if (problem) {
      rejects.drop(subject, header.signer, "bad hello", problem);
      return undefined;
    }
    return { id: hello.id, node: header.signer, data, fresh: this.fresh(header.signer, hello.id, data) };
  }

  /** A node's own hellos are ordered by its clock (`at`); a hello an operator wrote is new once, by its id. */
  private fresh(node: string, id: string, data: HelloData | undefined): boolean {
    if (!data) {
      const key = `${node}\u0000${id}`;
      if (this.helloIds.has(key)) return false;
      if (this.helloIds.size > 10_000) this.helloIds.clear();
      this.helloIds.add(key);
      return true;
    }
    if (data.at <= (this.lastHello.get(node) ?? 0)) return false;
    if (this.lastHello.size > 100_000) this.lastHello.clear();
    this.lastHello.set(node, data.at);
    return true;
  }
}

function parse(text: unknown): unknown {
  try {
    if (text instanceof Uint8Array) return JSON.parse(Buffer.from(text).toString("utf8"));
    return typeof text === "string" ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}
