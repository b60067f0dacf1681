/**
 * Building the reply to a request that ran here: the reply method and its
 * settings come from the request, the outcome goes in `result`, and the data
 * is cut to fit maxMessageSize (saying how much was dropped).
 */
import { newEnvelope } from "../message/envelope.js";
import type { Envelope, MethodResult } from "../message/message.js";
import type { MethodOutput } from "../methods/method.js";
import { encode } from "./wire.js";

export interface RunOutcome {
  output: MethodOutput;
  /** Set when the method failed (timeout, refused path, non-zero exit…). */
  error: string | undefined;
  /** Not run: its runBy had passed. */
  expired?: boolean;
  /** Its origin cancelled it: `error` says by whom. */
  cancelled?: boolean;
}

/** The reply to `request`, sent from `fromNode`; `part` for one part of a streamed or scheduled result. */
export function buildReply(
  request: Envelope,
  fromNode: string,
  { output, error, expired, cancelled }: RunOutcome,
  opts: {
    rerun: boolean;
    /** Run again after a graceful stop cut it short (stopGracePeriod). */
    interrupted?: boolean;
    /** The largest reply sent (maxMessageSize); above the broker's max_payload it goes in chunks. */
    maxSize: number;
    /** The broker's max_payload: a reply that goes back through a relay must fit one hop (relayedReplyRoom). */
    maxPayload: number;
    deliverBy: number;
    part?: { seq: number; partial: boolean };
  },
): Envelope {
  const { rerun, interrupted, part } = opts;
  const result: MethodResult = {
    ...(part && { seq: part.seq, ...(part.partial && { partial: true }) }),
    exitCode: output.exitCode ?? (error ? null : 0),
    ...(output.stderr && { stderr: output.stderr }),
    ...(error && { error }),
    ...(cancelled && { cancelled: true }),
    ...(rerun && { rerun: true }),
    ...(expired && { expired: true }),
    ...(interrupted && { interrupted: true }),
    ...(output.truncated && { truncated: output.truncated }),
  };
  // A reply wants no reply of its own; its delivery settings are the request's reply… fields.
  const reply = newEnvelope({
    toNode: request.fromNode,
    fromNode,
    method: request.replyMethod,
    methodArgs: request.replyMethodArgs ?? [],
    ACKTimeout: request.replyACKTimeout,
    retries: request.replyRetries,
    retryWait: request.retryWait ?? 0,
    methodTimeout: request.replyMethodTimeout,
    requestId: request.id,
    deliverBy: opts.deliverBy,
    result,
    // The origin cannot be reached but through its relay: the reply goes back the way the request came.
    ...(request.relayViaNode !== undefined && { relayViaNode: request.relayViaNode }),
    ...(output.data !== undefined && output.data !== "" && { data: output.data }),
  });
  const maxSize =
    request.relayViaNode !== undefined ? Math.min(opts.maxSize, relayedReplyRoom(opts.maxPayload)) : opts.maxSize;
  return fitPayload(reply, maxSize);
}

/**
 * The largest reply that goes back through a relay: a hop carries its frame in one piece, never in chunks
 * (relay.ts), base64 (4 bytes for 3) inside the relay's own signed hop, so the reply's frame must fit in
 * about 3/4 of max_payload, less room for the hop's envelope and signature.
 */
export function relayedReplyRoom(maxPayload: number): number {
  return Math.floor(((maxPayload - 4096) * 3) / 4);
}

/** Cut a reply's data so that it fits `maxSize` bytes, and say how much was dropped. */
export function fitPayload(reply: Envelope, maxSize: number): Envelope {
  const room = maxSize - 4096;
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
