/**
 * Taking messages in: every input hands its documents here. A document is
 * parsed and checked, all its valid messages are stored in one transaction,
 * the answers wait for one disk sync, and only then do the messages go to the
 * outbox — an "accepted" answer means the message is on disk. The later waves
 * of a batch rollout are stored too, pending, for src/delivery/batch.ts to release.
 */
import type { Batches } from "../delivery/batch.js";
import type { Outbox } from "../delivery/outbox.js";
import { errorText, StoreError } from "../errors.js";
import type { AcceptAnswer, Acceptor } from "../inputs/protocol.js";
import type { Logger } from "../log.js";
import { newId } from "../message/id.js";
import type { Labels } from "../message/labels.js";
import type { Envelope, Message } from "../message/message.js";
import { type ParseOutcome, parseMessages, waveSize } from "../message/parse.js";
import type { AuditLog } from "../observe/audit.js";
import type { StewardMetrics } from "../observe/metrics.js";
import { now } from "../security/clock.js";
import type { Store, WavePlacement } from "../store/store.js";
import type { Config } from "./config.js";

export interface AcceptPipelineOptions {
  config: Config;
  store: Store;
  outbox: Outbox;
  /** Batch rollouts: the messages of a later wave are stored pending, and released by it. */
  batches: Batches;
  metrics: StewardMetrics;
  audit: AuditLog;
  log: Logger;
  /** The admitted nodes carrying every one of `labels` (from the bundle held): what `toLabels` selects. */
  nodesWithLabels: (labels: Labels) => string[];
  /** True once the node is shutting down: documents are refused, with a word on when to send again. */
  refusing(): boolean;
}

/**
 * The deadlines a message is signed with: the operator's deliverBy (or defaultDeliverBy), flagged as given so
 * that the outbox waits for an absent target until then; else maxMessageAge. Either way a copy replayed
 * after deliverBy is refused as expired. runBy (or defaultRunBy), when there is one.
 */
function deadlines(
  m: Message,
  at: number,
  config: Pick<Config, "defaultDeliverBy" | "defaultRunBy" | "maxMessageAge">,
): Pick<Envelope, "deliverBy" | "deliverByGiven" | "runBy"> {
  const deliverBy = m.deliverBy ?? (config.defaultDeliverBy > 0 ? at + config.defaultDeliverBy * 1000 : undefined);
  const runBy = m.runBy ?? (config.defaultRunBy > 0 ? at + config.defaultRunBy * 1000 : undefined);
  return {
    deliverBy: deliverBy ?? at + config.maxMessageAge * 1000,
    ...(deliverBy !== undefined && { deliverByGiven: true }),
    ...(runBy !== undefined && { runBy }),
  };
}

export class AcceptPipeline implements Acceptor {
  constructor(private readonly opts: AcceptPipelineOptions) {}

  /** Parse, check and store every message of a document; answers once they are on disk. */
  async accept(text: string, source: string): Promise<AcceptAnswer[]> {
    const { config, store, outbox, batches, metrics, audit, log } = this.opts;
    if (this.opts.refusing()) {
      return [{ ok: false, error: "node is shutting down; send again once it has restarted" }];
    }
    const at = now();
    const outcomes = parseMessages(
      text,
      {
        ACKTimeout: config.defaultMessageTimeout,
        retries: config.defaultMessageRetries,
        methodTimeout: config.defaultMethodTimeout,
        now: at,
        maxDeliverBy: config.maxDeliverBy,
      },
      { nodesWithLabels: this.opts.nodesWithLabels },
    );
    // The whole document in one transaction: one disk sync for a fan-out to a thousand nodes.
    // Should that fail, each message is tried on its own so that each gets its own answer.
    const envelopes = outcomes.flatMap((outcome) =>
      "messages" in outcome
        ? outcome.messages.map((m): Envelope => ({
            ...m,
            fromNode: config.nodeName,
            attempt: 0,
            ...deadlines(m, at, config),
          }))
        : [],
    );
    const placements = outcomes.flatMap(wavePlacements);
    let batch: boolean[] | undefined;
    try {
      batch = store.outgoing.addMany(envelopes, placements);
    } catch (err) {
      log.warn("storing a batch failed; storing its messages one by one", { source, reason: errorText(err) });
    }
    const answers: AcceptAnswer[] = [];
    /** Where the newly stored messages are in `envelopes`. */
    const fresh: number[] = [];
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
          stored = batch ? (batch[at] as boolean) : store.outgoing.add(envelope, placements[at]);
        } catch (err) {
          answers.push({
            ok: false,
            index: outcome.index,
            error: `message ${outcome.index}: not accepted, ${errorText(err)}`,
          });
          continue;
        }
        if (stored) fresh.push(at);
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
    const rollouts = new Set<string>();
    for (const at of fresh) {
      const envelope = envelopes[at] as Envelope;
      const placement = placements[at];
      metrics.accepted(envelope);
      audit.accepted(envelope);
      // Stored either way: it is delivered, and `steward status` shows it, even when the sync failed.
      // A later wave of a batch rollout waits, pending, until the rollout releases it.
      if (placement) rollouts.add(placement.batchId);
      if (!placement || placement.wave === 1) outbox.deliver({ envelope, attempt: 0 });
      log.debug("accepted", { id: envelope.id, toNode: envelope.toNode, method: envelope.method, source });
    }
    // A rollout whose first wave was all duplicates of earlier messages goes on to its next at once.
    for (const batchId of rollouts) batches.check(batchId);
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

/** Where each message of an outcome goes in its batch rollout (one new rollout per input object with `batch`). */
function wavePlacements(outcome: ParseOutcome): (WavePlacement | undefined)[] {
  if (!("messages" in outcome)) return [];
  const { messages, rollout } = outcome;
  if (!rollout) return messages.map(() => undefined);
  const size = waveSize(rollout, messages.length);
  const batchId = newId();
  const waves = Math.ceil(messages.length / size);
  return messages.map((_, i) => ({
    batchId,
    wave: Math.floor(i / size) + 1,
    waves,
    maxErrors: rollout.maxErrors ?? null,
  }));
}
