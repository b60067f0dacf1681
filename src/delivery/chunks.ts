/**
 * Chunks: a signed message larger than the broker's max_payload travels as chunks (docs/DELIVERY.md, "Size").
 * The sender seals the whole message once, exactly as it would send it in one piece (its frame signed for
 * its method's subject), and cuts those bytes into chunks. Each chunk is a signed frame of its own on
 * `<toNode>._chunk.<fromNode>`, its body a JSON head and the raw bytes:
 *
 *   {"chunkOf":id,"method":m,"seq":n,"count":c,"size":bytes,"chunkSize":k,"sha256":hex,"deliverBy":ms}\n<bytes>
 *
 * and is ACKed ({chunk: id, seq}) once the receiver has it on disk (chunkInbox.ts). The chunk that completes
 * the set is answered with the whole message's own answer (ACK, refusal or busy), as if it had come in one
 * piece. A window of WINDOW chunks is in flight at a time; a re-send sends only the chunks not ACKed yet,
 * and the receiver ACKs again what it already has.
 */
import { createHash } from "node:crypto";
import { seal } from "../security/frame.js";
import { chunkSubject } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Ack, Wire } from "./wire.js";

/** Chunks in flight at once: enough to keep the link busy, few enough that a broker restart costs little. */
export const WINDOW = 4;

/** Bytes of max_payload kept for a chunk's frame header and head. */
export const CHUNK_ROOM = 4096;

/**
 * How much larger than maxMessageSize a whole frame may be: its signature line and envelope fields around
 * the data that maxMessageSize counts.
 */
export const FRAME_SLACK = 64 * 1024;

/** The smallest chunk a receiver takes (unless the whole fits in one): a sender cannot make it keep many tiny files. */
export const MIN_CHUNK = 4096;

/** The head of a chunk, before its bytes. */
export interface ChunkHead {
  /** The id of the message the chunk belongs to. */
  chunkOf: string;
  /** The method whose subject the whole message is signed for. */
  method: string;
  seq: number;
  count: number;
  /** Bytes of the whole signed message. */
  size: number;
  /** Bytes of every chunk but the last. */
  chunkSize: number;
  /** Of the whole signed message. */
  sha256: string;
  /** The message's own deliverBy: a set not complete by then is pruned. */
  deliverBy: number;
}

/** The receiver's "busy" (outbox.ts's Busy, which imports this file). */
type Busy = { busy: number; id: string };

/** sendChunks stopped early: the node is closing, or the message is no longer to be sent. */
export class ChunksStopped extends Error {
  constructor() {
    super("chunks no longer sent: closing, or the message was cancelled");
  }
}

/** The receiver has chunk `seq` of message `chunk` on disk. */
export interface ChunkAck {
  chunk: string;
  seq: number;
}

/** What a chunked delivery remembers between its attempts: the whole frame and the chunks ACKed so far. */
export interface ChunkedMessage {
  id: string;
  toNode: string;
  method: string;
  deliverBy: number;
  whole: Uint8Array;
  sha256: string;
  acked: Set<number>;
}

export function chunkedMessage(
  message: { id: string; toNode: string; method: string },
  deliverBy: number,
  whole: Uint8Array,
): ChunkedMessage {
  const sha256 = createHash("sha256").update(whole).digest("hex");
  return { id: message.id, toNode: message.toNode, method: message.method, deliverBy, whole, sha256, acked: new Set() };
}

/** Bytes of every chunk but the last for a broker that takes `maxPayload`. */
export const chunkSizeFor = (maxPayload: number): number => Math.max(MIN_CHUNK, maxPayload - CHUNK_ROOM);

/**
 * Send the chunks of `m` not ACKed yet, WINDOW at a time, each waiting `timeoutMs` for its ACK. Returns the
 * whole message's answer; throws when a chunk got none (the caller re-sends as for any message).
 * `onProgress(acked, count)` after each chunk ACK. `going()` false (the node is closing, or the message was
 * cancelled): no further chunk is sent, and it throws ChunksStopped once those in flight are answered or
 * ended (the transport's close ends them).
 */
export async function sendChunks(
  transport: Transport,
  wire: Wire,
  m: ChunkedMessage,
  timeoutMs: number,
  onProgress?: (acked: number, count: number) => void,
  going: () => boolean = () => true,
): Promise<Ack | Busy> {
  const chunkSize = chunkSizeFor(transport.maxPayload);
  const count = Math.ceil(m.whole.length / chunkSize);
  // Every chunk ACKed and still no answer (lost, or the receiver could not finish the set): send them all again.
  if (m.acked.size >= count) m.acked.clear();
  const todo = Array.from({ length: count }, (_, i) => i).filter((i) => !m.acked.has(i));
  const subject = chunkSubject(m.toNode, wire.nodeName);
  const identity = wire.trust.identity;
  let answer: Ack | Busy | undefined;
  let failure: Error | undefined;
  let next = 0;
  const accept =
    (seq: number) =>
    (reply: { subject: string; data: Uint8Array }): ChunkAck | Ack | Busy | undefined => {
      const value = wire.open(reply.subject, reply.data, m.toNode)?.value as
        | {
            [k in "chunk" | "seq" | "ack" | "busy" | "id"]?: unknown;
          }
        | null;
      if (!value) return undefined;
      if (value.chunk === m.id && value.seq === seq) return value as ChunkAck;
      if (value.ack === m.id || "refused" in value || ("busy" in value && value.id === m.id))
        return value as unknown as Ack | Busy;
      return undefined;
    };
  const worker = async () => {
    while (answer === undefined && failure === undefined && next < todo.length && going()) {
      const seq = todo[next++] as number;
      const head: ChunkHead = {
        chunkOf: m.id,
        method: m.method,
        seq,
        count,
        size: m.whole.length,
        chunkSize,
        sha256: m.sha256,
        deliverBy: m.deliverBy,
      };
      const body = Buffer.concat([
        Buffer.from(`${JSON.stringify(head)}\n`),
        m.whole.subarray(seq * chunkSize, Math.min(m.whole.length, (seq + 1) * chunkSize)),
      ]);
      try {
        const got = await transport.request(subject, seal(identity, subject, body), timeoutMs, accept(seq));
        if ("chunk" in got) {
          m.acked.add(seq);
          onProgress?.(m.acked.size, count);
        } else answer ??= got;
      } catch (err) {
        failure ??= new Error(`chunk ${seq + 1}/${count}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  if (answer) return answer;
  if (failure) throw failure;
  if (next < todo.length) throw new ChunksStopped();
  throw new Error(`all ${count} chunks ACKed, but no answer for the whole message`);
}
