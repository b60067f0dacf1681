/**
 * Message files written for ctrl (the Go system the seeds grew into) are taken as they are: this turns
 * ctrl's forms into Steward's before parse.ts checks the fields (docs/MESSAGES.md, "Files written for
 * ctrl"):
 *
 * - `data` as an array of strings, without `methodArgs`, is ctrl's older name of `methodArgs` for a
 *   method that runs from its arguments (`"data": ["bash","-c","ls"]`); elsewhere it stays the payload;
 * - an empty `toNode` beside a non-empty `toNodes` (ctrl writes every field) is left out;
 * - `"id": 0` (ctrl's empty id; its ids are a node-local counter) is left out: Steward gives each message its own;
 * - ctrl's other fields are left out when they hold their empty value (ctrl writes them all, used or not),
 *   and refused with what they would need when set.
 */
import { canonicalMethod, methodSpec } from "./methods.js";

// relayViaNode and relayReplyMethod are Steward's fields too (docs/MESSAGES.md); the rest ctrl sets on its own hops.
const RELAY = "is set by the relay node on its own hops in ctrl; Steward's relay needs only relayViaNode; leave it out";
const SET_BY_NODE = "is set by the node that sends the message, not by its file; leave it out";

/** ctrl's fields that Steward has no use for: ignored when empty, refused with this reason when set. */
const CTRL_ONLY: Readonly<Record<string, string>> = {
  relayOriginalViaNode: RELAY,
  relayFromNode: RELAY,
  relayToNode: RELAY,
  relayOriginalMethod: RELAY,
  jetstreamToNode: "delivery through a JetStream stream is not supported by this version",
  fromNode: SET_BY_NODE,
  isReply: SET_BY_NODE,
  isSubPublishedMsg: SET_BY_NODE,
  PreviousMessage: SET_BY_NODE,
  previousMessage: SET_BY_NODE,
  argSignature: "Steward signs every message with the sending node's key; a signature of ctrl's is not used",
};

/** The value ctrl writes for a field it does not use. */
function isEmpty(v: unknown): boolean {
  if (v === null || v === undefined || v === "" || v === false || v === 0) return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === "object" && Object.keys(v).length === 0;
}

/** ctrl's forms of a raw message object, in Steward's; `fail` refuses a field with its reason. */
export function fromCtrlForm(
  o: Record<string, unknown>,
  fail: (field: string, reason: string) => never,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) {
    const reason = CTRL_ONLY[key];
    if (reason === undefined) out[key] = value;
    else if (!isEmpty(value)) fail(key, reason);
  }
  if (out.toNode === "" && Array.isArray(out.toNodes) && out.toNodes.length > 0) delete out.toNode;
  if (out.id === 0) delete out.id;
  const method = typeof out.method === "string" ? canonicalMethod(out.method) : undefined;
  const dataIsArgs =
    out.methodArgs === undefined &&
    Array.isArray(out.data) &&
    out.data.every((item) => typeof item === "string") &&
    method !== undefined &&
    methodSpec(method)?.readsArgs === true;
  if (dataIsArgs) {
    out.methodArgs = out.data;
    delete out.data;
  }
  return out;
}
