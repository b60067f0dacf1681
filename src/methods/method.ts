/**
 * What every method gets and gives back. A handler runs on the node the
 * message was sent to (or, for a reply, on the node that sent the request),
 * honours `signal` (aborted on methodTimeout and on shutdown) and returns
 * its output; it throws MethodError when the method itself failed.
 */
import type { MethodOutput } from "../errors.js";
import type { Logger } from "../log.js";
import type { NewEnvelopeFields } from "../message/envelope.js";
import type { Envelope, MessageState, MethodResult } from "../message/message.js";
import type { MethodName } from "../message/methods.js";

export interface MethodContext {
  /** This node's name. */
  nodeName: string;
  /** Root of the files methods write (subscribersDataFolder). */
  dataFolder: string;
  /** The message being handled. */
  message: Envelope;
  /**
   * For a reply: the request this node sent and stored, which it answers.
   * Where the reply's data goes is taken from here, never from the wire: a peer cannot choose where this node writes.
   */
  request?: Envelope;
  /** Most bytes of output worth keeping. */
  maxOutput: number;
  signal: AbortSignal;
  /**
   * Aborted once the node begins a graceful stop. A run `signal` ends for that runs again at the next start
   * (interrupted); a method that undoes its work when it gives up (copySrc) keeps it for that run.
   */
  stopping?: AbortSignal;
  log: Logger;
  /**
   * Send part of the result back now (streaming methods). Each part travels
   * as a reply of its own, with the same guarantees; what the method returns
   * is the last part.
   */
  emit?: (data: string) => void;
  /** The node's subscribers, for the op methods. */
  subscribers?: SubscriberControl;
  /** A method that starts a process group tells its id, so a restart after a crash can end it. */
  onSpawn?: (pgid: number) => void;
  /** Port forwarding's frames to and from one other node (src/delivery/ports.ts). */
  ports?: PortLink;
  /**
   * Send a message of this node's own, stored and delivered like any other; returns it. `onEnded` is told
   * its final state (done, failed, expired, cancelled) and the reason, once.
   */
  send?: (fields: NewEnvelopeFields, onEnded?: (state: string, reason: string | undefined) => void) => Envelope;
  /**
   * Withdraw a message `send` sent, the way `steward cancel` does (a signed cancel follows it when it may have
   * reached its target), unless it has ended or its state is one of `unless`. True when it was withdrawn.
   */
  withdraw?: (id: string, by: string, unless?: readonly string[]) => boolean;
  /** A crash (`rerun`) or a graceful stop (`interrupted`) cut this message's last run short: this run is its next. */
  resumed?: "rerun" | "interrupted";
  /** The signed frame the message arrived in, for a method that keeps it (keepsFrame in src/message/methods.ts). */
  frame?: Uint8Array;
  /** Messages of its own a method sends (copySrc's status and finish steps), for a request. */
  messages?: MessageSender;
  /** A copy's chunks to and from other nodes (src/delivery/copyChunks.ts). */
  copies?: CopyLink;
}

/** One chunk of a file copy: which copy (its tag), where in the file, its bytes and their sha256 (hex). */
export interface CopyChunk {
  copy: string;
  index: number;
  sha256: string;
  data: Uint8Array;
}

/**
 * The destination's answer to a chunk: on disk (`written`: its index), the copy not open there (`unknown`:
 * the destination restarted or finished it; ask its status again), or a failure to write it (`error`).
 */
export type CopyAnswer = { written: number } | { unknown: string } | { error: string };

/** The chunks of file copies between this node and others. */
export interface CopyLink {
  /** Most bytes of data in one chunk: a chunk never outgrows the broker's max_payload. */
  readonly maxChunk: number;
  /** A buffer for a chunk's data, with room in front for what send() puts before it: sent without a copy. */
  chunkBuffer(length: number): Buffer;
  /** Send a chunk to `dst`; its answer, or a rejection when none came within `timeoutMs` (or no one listens). */
  send(dst: string, chunk: CopyChunk, timeoutMs: number): Promise<CopyAnswer>;
  /**
   * Take the chunks `source` signs for copy `copy`, their bytes matching their sha256 already, until the
   * returned function is called. `onChunk` answers, or names why a chunk is dropped unanswered (`drop`).
   */
  take(copy: string, source: string, onChunk: (chunk: CopyChunk) => CopyAnswer | { drop: string }): () => void;
}

/**
 * One frame of a forwarded TCP session (src/methods/portSession.ts). `s` names the session; open, data
 * and fin are numbered (`q`) in one sequence per direction and ACKed cumulatively (`a`: the last one
 * taken in order); rst ends the session at once.
 */
export interface PortFrame {
  s: string;
  t: "open" | "data" | "fin" | "ack" | "rst";
  q?: number;
  a?: number;
  /** data: the bytes, base64. */
  d?: string;
}

/** The frames of one forwarding (a portSrc message's id) between this node and its peer. */
export interface PortChannel {
  send(frame: PortFrame): void;
  /** Frames for a session this side does not know: counted and dropped. */
  drop(frame: PortFrame, why: string): void;
  close(): void;
}

export interface PortLink {
  /** Most bytes of data in one frame: a frame never outgrows the broker's max_payload. */
  readonly maxData: number;
  /** Take the frames `peer` signs for forwarding `id`; frames from anyone else are dropped. */
  attach(id: string, peer: string, onFrame: (frame: PortFrame) => void): PortChannel;
}

/** What a method may send itself: stored and delivered like any message of this node, with the same guarantees. */
export interface MessageSender {
  /** Store it as this node's message and start its delivery; false when its id was stored already (a re-run's). */
  send(envelope: Envelope): Promise<boolean>;
  /** How the message ended (done, failed, expired, cancelled), once it has; rejects when `signal` aborts. */
  outcome(id: string, signal: AbortSignal): Promise<SentOutcome>;
}

export interface SentOutcome {
  state: MessageState;
  reason: string | null;
  result: (MethodResult & { data?: string }) | null;
}

export type { MethodOutput };

export type MethodHandler = (ctx: MethodContext) => Promise<MethodOutput>;

/** Who may use a method on this node: "*" = every node. */
export type AllowedNodes = "*" | string[];

export interface SubscriberInfo {
  method: MethodName;
  allowedNodes: AllowedNodes;
  since: number;
}

/** What op methods may do to the node's subscribers. */
export interface SubscriberControl {
  list(): SubscriberInfo[];
  start(method: MethodName, allowedNodes: AllowedNodes): void;
  stop(method: MethodName): boolean;
}

/** Why `signal` was aborted (methodTimeout, shutdown), as text for an error. */
export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error ? r.message : typeof r === "string" ? r : "aborted";
}
