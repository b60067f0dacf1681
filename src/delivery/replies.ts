/**
 * The origin's side of a reply: a reply to one of this node's requests has
 * come back. It is let in only when it answers a request this node sent to
 * the reply's sender, asking for that reply method; once its reply method has
 * run here, the request moves on, in the same transaction as the reply's run:
 *
 *   a part (result.partial) ──▶ request running, keeping the latest part
 *   the last reply          ──▶ request done, or failed (the method failed there, or the reply method here),
 *                               or expired (not run there: its runBy had passed), or cancelled
 *                               (result.cancelled: the receiver did not run it, or ended its run)
 *
 * A request the operator cancelled here (steward cancel) keeps `cancelled` and gets the reply's result,
 * unless the reply says it had finished there before the cancel arrived: then that is the truth, and the
 * request moves to done or failed with a reason that says so.
 */
import type { Logger } from "../log.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { canonicalMethod, type MethodName } from "../message/methods.js";
import type { Store } from "../store/store.js";

export interface RepliesOptions {
  nodeName: string;
  store: Store;
  log: Logger;
  /** An error worth central's error log. */
  reportError(report: ErrorReport): void;
}

export class Replies {
  constructor(private readonly opts: RepliesOptions) {}

  /**
   * The request `reply` answers, or why it is refused: a reply may only run the reply method this
   * node asked for, from the node it asked — never a way for a peer to run any other method here.
   */
  requestAnswered(reply: Envelope, method: MethodName): { request: Envelope } | { refused: string } {
    const stored = this.opts.store.outgoing.get(reply.requestId as string);
    if (
      !stored ||
      stored.requestId !== null ||
      stored.toNode !== reply.fromNode ||
      canonicalMethod(stored.envelope.replyMethod) !== method
    ) {
      return {
        refused: `reply ${reply.id} from ${reply.fromNode} answers no ${method} request of ${this.opts.nodeName} (${reply.requestId})`,
      };
    }
    return { request: stored.envelope };
  }

  /**
   * Store the reply's run as done and move its request on, in one transaction. `error`: the reply
   * method failed here (the request still learns what happened there).
   */
  storeOutcome(reply: Envelope, error: string | undefined): void {
    const { store } = this.opts;
    const requestId = reply.requestId as string;
    const r = reply.result;
    const result = { ...r, ...(reply.data !== undefined && { data: reply.data }) };
    if (r?.partial) {
      store.moveRunToDoneAndRequestToRunning(reply, requestId, result);
      return;
    }
    const failed = Boolean(r?.error) || error !== undefined;
    let reason = r?.error ?? (error ? `the reply arrived but ${error}` : null);
    if (!r?.cancelled && store.outgoing.get(requestId)?.state === "cancelled") {
      reason = `${reason ? `${reason}; ` : ""}it had finished on ${reply.fromNode} before the cancel arrived`;
      this.opts.log.warn("a cancelled message had finished before its cancel arrived: its result stands", {
        id: requestId,
        toNode: reply.fromNode,
      });
    }
    // Not run there because its runBy had passed: expired, not failed.
    const state = r?.expired === true ? "expired" : r?.cancelled ? "cancelled" : failed ? "failed" : "done";
    store.moveRunToDoneAndRequestToFinal(reply, requestId, state, {
      reason,
      exitCode: r?.exitCode ?? null,
      result,
    });
  }

  /** Tell the log, and central for the last reply, that the reply method failed here. */
  reportFailure(reply: Envelope, method: MethodName, error: string): void {
    const requestId = reply.requestId as string;
    if (reply.result?.partial) {
      this.opts.log.warn("reply method failed on a streamed part", { id: reply.id, requestId, reason: error });
      return;
    }
    this.opts.log.warn("reply method failed", { id: reply.id, requestId, reason: error });
    this.opts.reportError({
      toNode: this.opts.nodeName,
      fromNode: reply.fromNode,
      method,
      id: requestId,
      reason: error,
    });
  }
}
