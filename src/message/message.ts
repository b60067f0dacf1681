/**
 * The message model: what an operator hands to a node (seed field names,
 * exactly), and what the node stores and sends once it has been accepted.
 */
import type { MethodName } from "./methods.js";

/** A message as accepted from an input: one target, defaults applied. */
export interface Message {
  id: string;
  toNode: string;
  method: MethodName;
  methodArgs: string[];
  replyMethod: MethodName;
  replyMethodArgs: string[];
  /** Seconds to wait for the ACK before re-sending; 0 = fire and forget. */
  ACKTimeout: number;
  /** Re-sends after the first attempt. */
  retries: number;
  /** Extra seconds between attempts. */
  retryWait: number;
  replyACKTimeout: number;
  replyRetries: number;
  /** Seconds the method may run; -1 = no limit. */
  methodTimeout: number;
  replyMethodTimeout: number;
  directory?: string;
  fileName?: string;
  data?: string;
  dataEncoding?: "base64";
  schedule?: [number, number];
  operation?: Record<string, unknown>;
  /** The operator's deadline (ms since the epoch): until then the message waits for its target, however long it is away. */
  deliverBy?: number;
  /** ms since the epoch: a message that reaches its target later, or has not started there by then, is not run. */
  runBy?: number;
  /** The node that carries it to toNode, and the reply back (docs/DELIVERY.md, "Relay"): for a node only it can reach. */
  relayViaNode?: string;
}

/** What travels on the wire: the message plus who sent it and, for a reply, what it answers. */
export interface Envelope extends Message {
  fromNode: string;
  /** Attempt number of this send (1-based), for the receiver's log only. */
  attempt: number;
  /**
   * Until when it may still be delivered (ms since the epoch; the origin's clock plus maxMessageAge). Signed with
   * the rest: within it the receiver's id dedupe makes a replay a duplicate, after it the message is refused as expired.
   */
  deliverBy: number;
  /**
   * The operator gave deliverBy (or defaultDeliverBy did): once its retries are spent the message waits for its
   * target until deliverBy, never failed for them. Absent: it fails once its retries are spent.
   */
  deliverByGiven?: true;
  /** Set on a reply: the id of the request it answers. */
  requestId?: string;
  /** Set on a reply: how the method went. */
  result?: MethodResult;
  /**
   * Set only on a relay node's own stored copy of a message it carries (never by the origin): the origin's signed
   * frame (base64), forwarded as it is (src/delivery/relay.ts).
   */
  relayFrame?: string;
}

/** The outcome of running a method, carried back in the reply. */
export interface MethodResult {
  /** Process exit code for commands; 0 for methods that succeeded. */
  exitCode: number | null;
  stderr?: string;
  /** Set when the method itself failed (timeout, refused path, unknown file…). */
  error?: string;
  /** Its origin cancelled it (`steward cancel`): not run, or its run ended early; `error` says by whom. */
  cancelled?: boolean;
  /** The run was cut short by a crash of the receiver and run again (guarantee 5). */
  rerun?: boolean;
  /** The run was cut short by a graceful stop of the receiver (stopGracePeriod ran out) and run again at its start. */
  interrupted?: boolean;
  /** Bytes dropped from `data` because the result was too large. */
  truncated?: number;
  /** Not run: its runBy had passed before it could start. The origin shows the request `expired`. */
  expired?: true;
  /** A part of a streamed result (cliCommandCont, tailFile); the last reply has no `partial`. */
  partial?: boolean;
  /** Order of the parts of a streamed result, from 1. */
  seq?: number;
}

/** What went wrong with a message, for central's error log. */
export interface ErrorReport {
  toNode: string;
  fromNode: string;
  method: string;
  id?: string;
  reason: string;
}

/**
 * The lifecycle of a message on its origin node (docs/DELIVERY.md, "The states"). One union for
 * store, API, CLI and metrics.
 *
 *   queued ──send──▶ sent(n) ──ACK──▶ acked ──notice──▶ running ──reply──▶ done
 *                                        └──notice──▶ waiting ──notice──┘ (maxConcurrentRuns busy there)
 *     │                │ no ACK, retries spent                    └──▶ failed (method error)
 *     │                └──────────────────────────────────────────────▶ failed (max retries)
 *     │                      (with the operator's deliverBy: waits for the target instead, until deliverBy)
 *     ├── expired (deliverBy or runBy passed)
 *     └── cancelled: `steward cancel` from any state before a final one (docs/DELIVERY.md, "Cancel")
 *   pending ──its wave is released──▶ queued (a batch rollout: src/delivery/batch.ts)
 */
export type MessageState =
  /** Stored, held back until its wave of a batch rollout is released (it stays so when the rollout stops). */
  | "pending"
  /** Stored, not yet sent. */
  | "queued"
  /** Sent, waiting for the ACK (see `attempt`). */
  | "sent"
  /** The receiver has stored it. */
  | "acked"
  /** The receiver has stored it, and it waits there for a free run (the receiver's maxConcurrentRuns are running). */
  | "waiting"
  /** The receiver has started the method. */
  | "running"
  /** The method finished (see exit code); the reply is handled. */
  | "done"
  /** Given up: retries spent, or the method failed (see reason). */
  | "failed"
  /** Its time ran out before it could be delivered (deliverBy), or before it could start there (runBy). */
  | "expired"
  /** Withdrawn by an operator (see `reason`: "cancelled by USER@NODE"). */
  | "cancelled";

/**
 * The lifecycle of a received message on the node that runs it. A message
 * already stored is ACKed again and never run again; one left received or
 * running by a stop or a crash runs (again) at the next start.
 *
 *   received ──its task starts──▶ running ──method ended──▶ done (+ its reply queued, one transaction)
 *                                   │   ▲
 *                     graceful stop ▼   │ next start
 *                                 interrupted
 */
export type InboxState =
  /** Stored (and so ACKed once on disk); its run has not started. */
  | "received"
  /** Its method has started (see `runs`: more than 1 means a stop or crash cut a run short). */
  | "running"
  /** A graceful stop cut its run short; it runs again at the next start, its result marked interrupted. */
  | "interrupted"
  /** The method ended, and its outcome (the reply, or the request it answers) is stored. */
  | "done";

export const FINAL_STATES: readonly MessageState[] = ["done", "failed", "expired", "cancelled"];

export function isFinal(state: MessageState): boolean {
  return FINAL_STATES.includes(state);
}
