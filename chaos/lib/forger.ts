/**
 * An attacker on the broker with no Steward key: a plain NATS connection
 * subscribed to `>` that sees every frame the fleet sends and answers each
 * with forgeries — verbatim replays, copies with one field changed, copies
 * moved to another node's subject or naming another sender, unsigned copies, copies signed with a key
 * of its own, random garbage — and races the genuine ACK with a forged one.
 * It counts what it sent by kind, and the answers it got: a tampered frame
 * must never be answered (src/delivery/rejects.ts drops it unanswered).
 */
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { onlineSubject, senderOf } from "../../src/delivery/subjects.js";
import { type FrameHeader, readHeader, seal } from "../../src/security/frame.js";
import type { Identity } from "../../src/security/identity.js";

/** What a captured frame is, from its subject (and for a method subject, its body). */
export type FrameKind = "request" | "reply" | "ACK" | "_state" | "_online" | "hello" | "bundle";

export interface ForgerOptions {
  url: string;
  /** Every node name: where moved copies go. */
  nodes: string[];
  /** A tampered methodArgs for a request to `toNode`: it must leave a trace there if it ever runs. */
  forgedArgs(toNode: string, id: string): string[];
  /** Forgeries sent per captured frame and kind of change (the volume). */
  rounds: number;
}

/** Where the answers to the forger's own frames come back: `<prefix>.<replay|tampered>.<n>`. */
const ANSWERS = "forger-answers";
const encoder = new TextEncoder();

export class Forger {
  /** Captured frames by kind. */
  readonly captured = new Map<FrameKind, number>();
  /** Forged frames sent, by "kind: change". */
  readonly sent = new Map<string, number>();
  /** Answers to verbatim replays (a node ACKs a re-sent message again: expected) and to tampered frames (must be 0). */
  readonly answers = { replay: 0, tampered: 0 };
  readonly tamperedAnswers: string[] = [];
  private nc!: NatsConnection;
  private n = 0;
  /** The frames forged on so far (see onFrame). */
  private readonly forged = new Set<string>();
  private readonly lastTampered = new Map<number, string>();
  private stopped = false;
  private readonly mallory: Identity;
  private readonly pendingInboxes: string[] = [];
  private readonly knownIds: string[] = [];

  private constructor(private readonly o: ForgerOptions) {
    const { privateKey } = generateKeyPairSync("ed25519");
    this.mallory = { name: "mallory", publicKey: "", key: privateKey, sign: (d) => sign(null, d, privateKey) };
  }

  static async start(o: ForgerOptions): Promise<Forger> {
    const f = new Forger(o);
    // noEcho: the forger never captures (and so never forges on) its own forgeries.
    f.nc = await connect({ servers: o.url, name: "forger", noEcho: true });
    f.nc.subscribe(`${ANSWERS}.>`, {
      callback: (_err, msg) => {
        const tampered = msg.subject.split(".")[1] === "tampered";
        if (tampered) {
          f.answers.tampered++;
          if (f.tamperedAnswers.length < 5)
            f.tamperedAnswers.push(
              `${msg.subject}: ${new TextDecoder().decode(msg.data).slice(0, 200)} for ${f.lastTampered.get(Number(msg.subject.split(".")[2]))}`,
            );
        } else f.answers.replay++;
      },
    });
    f.nc.subscribe(">", { callback: (_err, msg) => f.onFrame(msg) });
    await f.nc.flush();
    return f;
  }

  get total(): number {
    let t = 0;
    for (const v of this.sent.values()) t += v;
    return t;
  }

  /** Stop forging; resolves once the broker has every forged frame (later traffic reaches nodes after them). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.nc.flush();
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }

  private onFrame(msg: Msg): void {
    if (this.stopped || msg.subject.startsWith(`${ANSWERS}.`)) return;
    const header = readHeader(msg.data);
    if (!header) return; // Not a Steward frame (a forgery of another kind never reaches here: noEcho).
    const body = parseObject(header.body);
    const kind = kindOf(msg.subject, body);
    if (!kind) return;
    this.captured.set(kind, (this.captured.get(kind) ?? 0) + 1);
    if (typeof body?.id === "string" && this.knownIds.length < 10_000) this.knownIds.push(body.id);
    // Race the genuine ACK: the attacker sees the request as soon as its receiver does.
    if (msg.reply && (kind === "request" || kind === "reply") && typeof body?.id === "string") {
      this.emit(kind, "raced ACK", msg.reply, encoder.encode(JSON.stringify({ ack: body.id })), false);
      this.pendingInboxes.push(msg.reply);
      if (this.pendingInboxes.length > 50) this.pendingInboxes.shift();
    }
    // Forged on its first sight only: a re-send of the same message is forged on no further (else the re-sends the
    // raced ACKs cause would feed the forger without end), though every attempt's ACK is raced.
    const id = body?.id ?? body?.ack ?? body?.at ?? body?.version;
    const key = `${kind} ${kind === "ACK" ? "" : msg.subject} ${String(id)}`;
    if (this.forged.has(key)) return;
    this.forged.add(key);
    for (let r = 0; r < this.o.rounds; r++) this.forge(kind, msg, header, body);
  }

  private forge(kind: FrameKind, msg: Msg, header: FrameHeader, body: Record<string, unknown> | undefined): void {
    const withReply = kind === "request" || kind === "reply" || kind === "hello";
    this.emit(kind, "verbatim", msg.subject, msg.data, withReply, "replay");
    if (body) {
      for (const [field, value] of this.changes(kind, msg.subject, body))
        this.emit(kind, `changed ${field}`, msg.subject, frame(header, { ...body, [field]: value }), withReply);
    }
    const moved = this.movedSubject(kind, msg.subject);
    if (moved) this.emit(kind, "moved subject", moved, msg.data, withReply);
    const renamed = this.otherSender(kind, msg.subject);
    if (renamed) this.emit(kind, "another sender on the subject", renamed, msg.data, withReply);
    this.emit(kind, "unsigned", msg.subject, header.body, withReply);
    // Signed, but by a key no node admitted: as itself, and under the real signer's name.
    this.emit(kind, "signed by unknown key", msg.subject, seal(this.mallory, msg.subject, header.body), withReply);
    const posing = { ...this.mallory, name: header.signer };
    this.emit(kind, "signed as signer, wrong key", msg.subject, seal(posing, msg.subject, header.body), withReply);
    this.emit(kind, "garbage", msg.subject, garbage(header.signer), withReply);
  }

  /** The fields changed in tampered copies of a frame of `kind`, with their forged values. */
  private changes(kind: FrameKind, subject: string, body: Record<string, unknown>): [string, unknown][] {
    const id = typeof body.id === "string" ? body.id : "x";
    // Another message's id (never the one the field holds: that copy would be a verbatim replay).
    const other = (held: unknown): string => {
      const pick = this.knownIds[Math.floor(Math.random() * this.knownIds.length)] ?? "x";
      return pick === held ? `forged-${pick}` : pick;
    };
    const toNode = subject.split(".")[0] ?? "";
    switch (kind) {
      case "request":
        return [
          ["id", `forged-${id}`],
          ["fromNode", this.o.nodes.find((n) => n !== body.fromNode) ?? "mallory"],
          ["methodArgs", this.o.forgedArgs(toNode, `forged-${id}`)],
          ["data", "forged"],
        ];
      case "reply":
        return [
          ["id", `forged-${id}`],
          ["requestId", other(body.requestId)],
          ["result", { exitCode: 99, error: "forged result" }],
          ["data", "forged"],
          ["fromNode", this.o.nodes.find((n) => n !== body.fromNode) ?? "mallory"],
        ];
      case "ACK":
        return [["ack", other(body.ack)]];
      case "_state":
        return [["id", other(body.id)]];
      case "_online":
        return [["at", Date.now() + 1e9]];
      case "hello":
        return [
          ["data", JSON.stringify({ publicKey: "A".repeat(43), bundle: 0, at: Date.now() + 1e9 })],
          ["id", `forged-${id}`],
        ];
      case "bundle":
        return [["version", 1e9]];
    }
  }

  /** Another node than `node`, a different one from call to call. */
  private otherNode(node: string | undefined): string | undefined {
    return this.o.nodes.filter((n) => n !== node)[this.n % (this.o.nodes.length - 1)];
  }

  /**
   * The same frame on another node's subject (an ACK: on another pending request's inbox; an `_online.<node>`:
   * another node's announcement).
   */
  private movedSubject(kind: FrameKind, subject: string): string | undefined {
    if (kind === "ACK") return this.pendingInboxes.find((s) => s !== subject);
    if (kind === "bundle") return undefined;
    if (kind === "_online") {
      const to = this.otherNode(senderOf(subject));
      return to ? onlineSubject(to) : undefined;
    }
    const [node, ...rest] = subject.split(".");
    const to = this.otherNode(node);
    return to ? [to, ...rest].join(".") : undefined;
  }

  /**
   * The same frame for the same node, on the subject that names another sender than its signer: as an attacker
   * would pass a frame off as another node's. None for an ACK (its inbox names no sender), a bundle (its
   * signature does not cover the subject; only central sends one) or an `_online` (moved covers it).
   */
  private otherSender(kind: FrameKind, subject: string): string | undefined {
    if (kind === "ACK" || kind === "bundle" || kind === "_online") return undefined;
    const tokens = subject.split(".");
    const to = this.otherNode(senderOf(subject));
    return to ? [...tokens.slice(0, -1), to].join(".") : undefined;
  }

  private emit(
    kind: FrameKind,
    change: string,
    subject: string,
    data: Uint8Array,
    withReply: boolean,
    answer: "replay" | "tampered" = "tampered",
  ): void {
    const key = `${kind}: ${change}`;
    this.sent.set(key, (this.sent.get(key) ?? 0) + 1);
    this.n++;
    if (withReply && answer === "tampered") {
      // What each recent tampered frame was, so that an answer to one names it.
      this.lastTampered.set(this.n, `${key} on ${subject}`);
      if (this.lastTampered.size > 50_000) this.lastTampered.delete(this.lastTampered.keys().next().value as number);
    }
    try {
      this.nc.publish(subject, data, withReply ? { reply: `${ANSWERS}.${answer}.${this.n}` } : undefined);
    } catch {
      // The connection is closing: nothing more to forge.
    }
  }
}

/** By its subject's shape (src/delivery/subjects.ts): `_INBOX.…`, `[<node>.]_bundle.<central>`, `<node>._state.<from>`… */
function kindOf(subject: string, body: Record<string, unknown> | undefined): FrameKind | undefined {
  const [first, second] = subject.split(".");
  if (first === "_INBOX") return "ACK";
  if (first === "_bundle" || second === "_bundle") return "bundle";
  if (second === "_state") return "_state";
  if (first === "_online") return "_online";
  if (second === "hello") return "hello";
  if (!body) return undefined;
  return typeof body.requestId === "string" ? "reply" : "request";
}

function parseObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(bytes).toString("utf8"));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The original header (signer and signature) over a changed body. */
function frame(header: FrameHeader, body: unknown): Uint8Array {
  return Buffer.concat([
    encoder.encode(`SW1 ${header.signer} ${header.signature.toString("base64url")}\n`),
    encoder.encode(JSON.stringify(body)),
  ]);
}

/** Random bytes, half of them behind a header that looks like a frame's. */
function garbage(signer: string): Uint8Array {
  const junk = randomBytes(16 + Math.floor(Math.random() * 400));
  if (Math.random() < 0.5) return junk;
  return Buffer.concat([encoder.encode(`SW1 ${signer} ${randomBytes(64).toString("base64url")}\n`), junk]);
}
