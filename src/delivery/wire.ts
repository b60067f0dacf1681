/**
 * What travels on the broker, as JSON: the envelope (a message with its
 * sender), the ACK bound to one message id, and progress notices.
 */
import type { Envelope } from "../message/message.js";
import { badTokenReason } from "../message/names.js";

/** The receiver's answer to a message: stored (ACK, naming the id) or refused (never retried). */
export type Ack = { ack: string } | { refused: string; id?: string };

export interface StateNotice {
  id: string;
  state: "running";
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
  for (const f of ["ACKTimeout", "retries", "methodTimeout"] as const) {
    if (typeof e[f] !== "number") return `field ${f} missing or not a number`;
  }
  return undefined;
}
