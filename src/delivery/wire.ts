/**
 * What travels on the broker: JSON bodies — the envelope (a message with its
 * sender), the ACK bound to one message id, progress notices, presence —
 * each in a frame signed by its sender (src/security/frame.ts). `Wire` seals
 * what this node sends and opens what it receives: a frame that fails
 * verification is dropped and counted (rejects.ts) before its body is read.
 */
import type { Envelope } from "../message/message.js";
import { badTokenReason } from "../message/names.js";
import { seal } from "../security/frame.js";
import type { Trust } from "../security/trust.js";
import type { Rejects } from "./rejects.js";
import { senderOf } from "./subjects.js";

/** The receiver's answer to a message: stored (ACK, naming the id) or refused (never retried). */
export type Ack = { ack: string } | { refused: string; id?: string };

/** `_online.<node>`: the node is (back) on the broker. `at` only goes up, so a replayed one is ignored. */
export interface Presence {
  node: string;
  at: number;
}

/** A verified frame's signer and its body, parsed. */
export interface Opened {
  signer: string;
  value: unknown;
}

export class Wire {
  constructor(
    readonly trust: Trust,
    private readonly rejects: Rejects,
  ) {}

  get nodeName(): string {
    return this.trust.identity.name;
  }

  /** `value` as JSON, signed by this node for `subject`. */
  seal(subject: string, value: unknown): Uint8Array {
    return seal(this.trust.identity, subject, encode(value));
  }

  /**
   * The signer and body of a frame received on `subject`, or undefined when it fails verification
   * (then it is counted and logged; the caller drops it without an answer). `signer`: the node it must
   * come from (an ACK from the node the message went to, say).
   */
  open(subject: string, bytes: Uint8Array, signer?: string): Opened | undefined {
    const opened = this.openBody(subject, bytes, signer);
    if (!opened) return undefined;
    try {
      return { signer: opened.signer, value: decodeJson(opened.body) };
    } catch {
      this.drop(subject, opened.signer, "not JSON", "signed, but the body is not JSON");
      return undefined;
    }
  }

  /** As open(), but the body is left as bytes (a chunk carries raw data after its JSON head: chunks.ts). */
  openBody(subject: string, bytes: Uint8Array, signer?: string): { signer: string; body: Uint8Array } | undefined {
    const opened = this.trust.open(bytes, subject);
    if (!opened.ok) {
      this.rejects.drop(subject, opened.signer, opened.kind, opened.problem);
      return undefined;
    }
    const named = senderOf(subject);
    if (named !== undefined && named !== opened.signer) {
      this.drop(subject, opened.signer, "wrong signer", `signed by ${opened.signer} on a subject that names ${named}`);
      return undefined;
    }
    if (signer !== undefined && opened.signer !== signer) {
      this.drop(subject, opened.signer, "wrong signer", `signed by ${opened.signer}, expected ${signer}`);
      return undefined;
    }
    return { signer: opened.signer, body: opened.body };
  }

  /** Drop something that was signed but is not what its signer may send (a reply naming another sender, say). */
  drop(subject: string, signer: string | undefined, kind: string, problem: string): void {
    this.rejects.drop(subject, signer, kind, problem);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(decoder.decode(bytes));
}

/** Check what a peer sent is an envelope we can store; returns the reason when it is not. */
export function envelopeProblem(v: unknown): string | undefined {
  if (v === null || typeof v !== "object") return "not a JSON object";
  const e = v as Partial<Envelope>;
  for (const f of ["id", "fromNode", "toNode", "method"] as const) {
    if (typeof e[f] !== "string" || e[f] === "") return `field ${f} missing or not a string`;
  }
  // Node names become subject tokens and folder names: "../x" or "a b" from a peer is refused here.
  for (const f of ["fromNode", "toNode"] as const) {
    const bad = badTokenReason(e[f] as string);
    if (bad) return `${f} ${bad}`;
  }
  if (!Array.isArray(e.methodArgs) || !e.methodArgs.every((a) => typeof a === "string"))
    return "field methodArgs missing or not an array of strings";
  for (const f of ["directory", "fileName", "data"] as const) {
    if (e[f] !== undefined && typeof e[f] !== "string") return `field ${f} is not a string`;
  }
  for (const f of ["ACKTimeout", "retries", "methodTimeout", "deliverBy"] as const) {
    if (typeof e[f] !== "number") return `field ${f} missing or not a number`;
  }
  return undefined;
}
