/**
 * Batch rollout on the origin node: the messages one input object fans out to (its targets) go in
 * waves of `batch`, and no further wave goes once more than `maxErrors` of them went wrong.
 *
 *   accepted ── every message stored at once: wave 1 queued (delivered), later waves pending
 *   wave k: every message final ──errors ≤ maxErrors, k < waves──▶ wave k+1 released (pending → queued)
 *                               ├─errors > maxErrors──────────────▶ stopped: later waves stay pending
 *                               └─k = waves───────────────────────▶ done
 *
 * An error is a message that ended failed or expired, or done with a non-zero exit code or an error.
 * A message still on its way (a target offline, say) is no error: it keeps its wave open. Cancelled
 * ends a message without an error. Everything is read from the store, so a restart picks a rollout up
 * where it was (resume()).
 */
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import { isFinal } from "../message/message.js";
import type { Store } from "../store/store.js";
import type { Outbox } from "./outbox.js";

/** Whether a message of a rollout counts against its maxErrors. */
export function isRolloutError(m: {
  state: string;
  exitCode: number | null;
  error?: string | null | undefined;
}): boolean {
  if (m.state === "failed" || m.state === "expired") return true;
  return m.state === "done" && ((m.exitCode !== null && m.exitCode !== 0) || Boolean(m.error));
}

export class Batches {
  /** Rollouts whose check is due at the end of this turn (one check each, however many messages ended). */
  private readonly due = new Set<string>();
  private stopListening: (() => void) | undefined;
  /** The node is stopping: its rollouts are picked up at the next start. */
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {}

  /** Follow the messages that end, and pick up every rollout still running (after a restart). */
  resume(): number {
    this.stopListening ??= this.store.outgoing.onFinal((id) => {
      const batchId = this.store.outgoing.batchOf(id);
      if (batchId) this.check(batchId);
    });
    const running = this.store.outgoing.runningBatches();
    for (const batchId of running) this.check(batchId);
    return running.length;
  }

  /**
   * Look at a rollout once the current write is over: a message moves to final inside a transaction
   * (with its reply's run, say) that the next wave must not be part of.
   */
  check(batchId: string): void {
    if (this.stopped || this.due.has(batchId)) return;
    this.due.add(batchId);
    queueMicrotask(() => {
      this.due.delete(batchId);
      if (this.stopped) return;
      try {
        this.advance(batchId);
      } catch (err) {
        // The store refused a write (disk full): the next message that ends, or the next start, tries again.
        this.log.error("cannot move a batch rollout on", { batchId, reason: errorText(err) });
      }
    });
  }

  stop(): void {
    this.stopped = true;
    this.stopListening?.();
    this.stopListening = undefined;
  }

  private advance(batchId: string): void {
    const outgoing = this.store.outgoing;
    const batch = outgoing.batch(batchId);
    if (!batch || batch.state !== "running") return;
    let wave = batch.wave;
    for (;;) {
      const members = outgoing.batchMembers(batchId);
      if (members.some((m) => m.wave <= wave && !isFinal(m.state))) return;
      const errors = members.filter(isRolloutError).length;
      if (batch.maxErrors !== null && errors > batch.maxErrors) {
        outgoing.endBatch(batchId, "stopped");
        const held = members.filter((m) => m.state === "pending").length;
        this.log.warn("batch rollout stopped: more errors than maxErrors", {
          batchId,
          wave: `${wave}/${batch.waves}`,
          errors,
          maxErrors: batch.maxErrors,
          pending: held,
        });
        return;
      }
      if (wave >= batch.waves) {
        outgoing.endBatch(batchId, "done");
        this.log.info("batch rollout done", { batchId, waves: batch.waves, errors });
        return;
      }
      wave++;
      const released = outgoing.releaseWave(batchId, wave);
      this.log.info("batch rollout: next wave", {
        batchId,
        wave: `${wave}/${batch.waves}`,
        toNodes: released.map((r) => r.toNode).join(","),
      });
      for (const rec of released) this.outbox.deliver(rec);
      // A wave with nothing left to send (its messages were duplicates of earlier ones) is over at once.
    }
  }
}
