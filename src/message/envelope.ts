/**
 * A new envelope a node writes itself (a reply, a hello, an error report)
 * rather than one accepted from an input: the fields it leaves out get the
 * values of a message that wants no reply and is sent once.
 */
import { newId } from "./id.js";
import type { Envelope } from "./message.js";

/** The fields every new envelope names; `replyMethodTimeout` defaults to `methodTimeout`. */
export type NewEnvelopeFields = Pick<Envelope, "toNode" | "fromNode" | "method" | "methodTimeout" | "deliverBy"> &
  Partial<Envelope>;

export function newEnvelope(fields: NewEnvelopeFields): Envelope {
  return {
    id: newId(),
    methodArgs: [],
    replyMethod: "none",
    replyMethodArgs: [],
    ACKTimeout: 0,
    retries: 0,
    retryWait: 0,
    replyACKTimeout: 0,
    replyRetries: 0,
    replyMethodTimeout: fields.methodTimeout,
    attempt: 0,
    ...fields,
  };
}
