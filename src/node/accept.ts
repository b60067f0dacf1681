/**
 * Taking messages in: every input hands its documents here. A document is
 * parsed and checked, all its valid messages are stored in one transaction,
 * the answers wait for one disk sync, and only then do the messages go to the
 * outbox — an "accepted" answer means the message is on disk.
 */
import type { Outbox } from "../delivery/outbox.js";
import { errorText, StoreError } from "../errors.js";
import type { AcceptAnswer, Acceptor } from "../inputs/protocol.js";
import type { Logger } from "../log.js";
import type { Labels } from "../message/labels.js";
import type { Envelope } from "../message/message.js";
import { parseMessages } from "../message/parse.js";
import type { AuditLog } from "../observe/audit.js";
import type { StewardMetrics } from "../observe/metrics.js";
import { now } from "../security/clock.js";
import type { Store } from "../store/store.js";
import type { Config } from "./config.js";

export interface AcceptPipelineOptions {
  config: Config;
  store: Store;
  outbox: Outbox;
  metrics: StewardMetrics;
  audit: AuditLog;
  log: Logger;
  /** The admitted nodes carrying every one of `labels` (from the bundle held): what `toLabels` selects. */
  nodesWithLabels: (labels: Labels) => string[];
  /** True once the node is shutting down: documents are refused, with a word on when to send again. */
  refusing(): boolean;
}

export class AcceptPipeline implements Acceptor {
  constructor(private readonly opts: AcceptPipelineOptions) {}

  /** Parse, check and store every message of a document; answers once they are on disk. */
  async accept(text: string, source: string): Promise<AcceptAnswer[]> {
    const { config, store, outbox, metrics, audit, log } = this.opts;
    if (this.opts.refusing()) {
      return [{ ok: false, error: "node is shutting down; send again once it has restarted" }];
    }
    const outcomes = parseMessages(
      text,
      {
        ACKTimeout: config.defaultMessageTimeout,
        retries: config.defaultMessageRetries,
        methodTimeout: config.defaultMethodTimeout,
      },
      { nodesWithLabels: this.opts.nodesWithLabels },
    );
    // Signed with the message: a copy replayed after this is refused as expired.
    const deliverBy = now() + config.maxMessageAge * 1000;
    // The whole document in one transaction: one disk sync for a fan-out to a thousand nodes.
    // Should that fail, each message is tried on its own so that each gets its own answer.
    const envelopes = outcomes.flatMap((outcome) =>
      "messages" in outcome
        ? outcome.messages.map((m): Envelope => ({ ...m, fromNode: config.nodeName, attempt: 0, deliverBy: deliverBy }))
        : [],
    );
    let batch: boolean[] | undefined;
    try {
      batch = store.outgoing.addMany(envelopes);
    } catch (err) {
      log.warn("storing a batch failed; storing its messages one by one", { source, reason: errorText(err) });
    }
    const answers: AcceptAnswer[] = [];
    const fresh: Envelope[] = [];
    let next = 0;
    for (const outcome of outcomes) {
      if ("error" in outcome) {
        answers.push({
          ok: false,
          error: outcome.error.message,
          ...(outcome.index !== undefined && { index: outcome.index }),
        });
        log.warn("refused input", { source, reason: outcome.error.message });
        continue;
      }
      for (const _msg of outcome.messages) {
        const at = next++;
        const envelope = envelopes[at] as Envelope;
        let stored: boolean;
        try {
          stored = batch ? (batch[at] as boolean) : store.outgoing.add(envelope);
        } catch (err) {
          answers.push({
            ok: false,
            index: outcome.index,
            error: `message ${outcome.index}: not accepted, ${errorText(err)}`,
          });
          continue;
        }
        if (stored) fresh.push(envelope);
        answers.push({
          ok: true,
          id: envelope.id,
          toNode: envelope.toNode,
          method: envelope.method,
          ...(!stored && { duplicate: true }),
        });
      }
    }
    // "accepted" only once it is on disk; a duplicate's first copy may still be on its way there too.
    let unsynced: string | undefined;
    try {
      await store.durable();
    } catch (err) {
      if (err instanceof StoreError && err.lost) {
        // Rolled back (disk full at commit, say): none of them is stored.
        log.warn("messages not stored", { source, reason: errorText(err) });
        return answers.map((a) => (a.ok ? { ok: false, error: `message ${a.id} not accepted, ${errorText(err)}` } : a));
      }
      unsynced = errorText(err);
    }
    for (const envelope of fresh) {
      metrics.accepted(envelope);
      audit.accepted(envelope);
      // Stored either way: it is delivered, and `steward status` shows it, even when the sync failed.
      outbox.deliver({ envelope, attempt: 0 });
      log.debug("accepted", { id: envelope.id, toNode: envelope.toNode, method: envelope.method, source });
    }
    if (unsynced === undefined) return answers;
    log.error("accepted messages may not be on disk", { source, reason: unsynced });
    return answers.map((a) =>
      a.ok
        ? {
            ok: false,
            error: `message stored as ${a.id} but not confirmed on disk (${unsynced}); check "steward status ${a.id}" before sending it again`,
          }
        : a,
    );
  }
}
