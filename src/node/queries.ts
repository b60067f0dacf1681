/**
 * The node's answers to the queries of src/inputs/queries.ts, from its store
 * and its state. The unix socket and the HTTP listener serve them.
 */
import type {
  CancelView,
  Health,
  MessageView,
  QueryAnswer,
  QueryArgs,
  QueryHandlers,
  QueryRefusal,
  QueryReply,
} from "../inputs/queries.js";
import { hasLabels, labelsProblem } from "../message/labels.js";
import { isFinal } from "../message/message.js";
import { canonicalMethod, methodSpec } from "../message/methods.js";
import { badTokenReason } from "../message/names.js";
import { parsePublicKey } from "../security/identity.js";
import type { OutgoingRecord, OutgoingSummary, Store } from "../store/store.js";
import type { Admission } from "./admission.js";

/** The longest a `wait` query holds its connection open. */
const MAX_WAIT_MS = 60_000;

export interface NodeQueriesOptions {
  nodeName: string;
  centralNodeName: string;
  store: Store;
  /** Central's key registry; undefined on every other node. */
  admission: Admission | undefined;
  /** The bundle version held. */
  bundleVersion(): number;
  /** A node's labels, as the bundle held has them. */
  labelsOf: (name: string) => Record<string, string>;
  /** Every node the bundle held admits. */
  admittedNodes: () => string[];
  /** The node's lifecycle, broker link and in-flight count as they are now. */
  health(): Health;
  /** Withdraw a message that has not ended (the outbox's cancel); false when it had ended meanwhile. */
  cancelMessage(rec: OutgoingRecord, by: string): boolean;
}

export class NodeQueries implements QueryHandlers {
  /** Pending `wait` queries: each ends its wait when called. */
  private readonly waits = new Set<() => void>();

  constructor(private readonly opts: NodeQueriesOptions) {}

  status({ id }: QueryArgs<"status">): QueryReply<"status"> {
    const rec = this.opts.store.outgoing.get(id);
    if (!rec) return this.unknown(id);
    return { message: messageView(rec, true, this.opts.store) };
  }

  list({ limit, filter }: QueryArgs<"list">): QueryAnswer<"list"> {
    const n = listLimit(limit);
    // One row past the limit says whether more match, without counting them all.
    return messageList(this.opts.store.outgoing.list(n + 1, filter), n, this.opts.store);
  }

  changes({ limit, after, filter }: QueryArgs<"changes">): QueryAnswer<"changes"> {
    const n = listLimit(limit);
    const cursor = { updatedAt: Date.parse(after.updatedAt), id: after.id };
    return messageList(this.opts.store.outgoing.changes(cursor, n + 1, filter), n, this.opts.store);
  }

  wait({ ms, ids }: QueryArgs<"wait">): QueryReply<"wait"> | Promise<QueryReply<"wait">> {
    const unknown = ids.find((id) => !this.opts.store.outgoing.get(id));
    if (unknown) return this.unknown(unknown);
    return this.waitFinal(ids, Math.min(ms, MAX_WAIT_MS));
  }

  nodes({ labels }: QueryArgs<"nodes">): QueryAnswer<"nodes"> {
    const { nodeName, centralNodeName, store, labelsOf, admittedNodes } = this.opts;
    const known = store.nodes.list().map((n) => ({ ...n, labels: labelsOf(n.name) }));
    if (!labels) return { node: nodeName, central: centralNodeName, nodes: known };
    // By label: every admitted node that matches, whether or not it has said hello or been sent to yet.
    const byName = new Map(known.map((n) => [n.name, n]));
    const nodes = admittedNodes()
      .map(
        (name) => byName.get(name) ?? { name, lastSeen: null, pending: 0, failed: 0, total: 0, labels: labelsOf(name) },
      )
      .filter((n) => hasLabels(n.labels, labels));
    return { node: nodeName, central: centralNodeName, nodes };
  }

  health(): Health {
    return this.opts.health();
  }

  /**
   * `steward cancel`: the messages named, or every operator message not ended yet that matches all the
   * filters given. The answer comes once what changed is on disk.
   */
  async cancel({ ids, toNode, states, method, by }: QueryArgs<"cancel">): Promise<QueryReply<"cancel">> {
    const { store, nodeName } = this.opts;
    const filtered = toNode !== undefined || states !== undefined || method !== undefined;
    if ((ids.length > 0 && filtered) || (ids.length === 0 && !filtered))
      return { error: "cancel takes message ids, or filters (--to, --state, --method), not both" };
    const wanted = method === undefined ? undefined : (canonicalMethod(method) ?? method);
    const records: [string, OutgoingRecord | undefined][] = filtered
      ? store.outgoing
          .unfinished()
          .filter(
            (rec) =>
              (toNode === undefined || rec.toNode === toNode) &&
              (states === undefined || states.includes(rec.state)) &&
              (wanted === undefined || rec.method === wanted) &&
              ownMessageReason(rec) === undefined,
          )
          .map((rec) => [rec.id, rec])
      : ids.map((id) => [id, store.outgoing.get(id)]);
    const who = `${by || "unknown"}@${nodeName}`;
    const views = records.map(([id, rec]): CancelView => {
      if (!rec) return { id, outcome: "unknown" };
      const refused = ownMessageReason(rec);
      if (refused) return { id, outcome: "refused", state: rec.state, reason: refused };
      if (!isFinal(rec.state) && this.opts.cancelMessage(rec, who))
        return { id, outcome: "cancelled", state: "cancelled" };
      return { id, outcome: "final", state: store.outgoing.get(id)?.state ?? rec.state };
    });
    await store.durable();
    return { cancelled: views };
  }

  keys(): QueryReply<"keys"> {
    const admission = this.central();
    if ("error" in admission) return admission;
    return { central: this.opts.nodeName, bundle: admission.bundleVersion, keys: admission.list() };
  }

  async approve({ node, groups, labels, publicKey }: QueryArgs<"approve">): Promise<QueryReply<"approve">> {
    const admission = this.central();
    if ("error" in admission) return admission;
    const bad = badTokenReason(node);
    if (bad) return { error: `node name ${bad}` };
    const badLabels = labels === undefined ? undefined : labelsProblem(labels);
    if (badLabels) return { error: `--labels: ${badLabels}` };
    if (publicKey !== undefined && !parsePublicKey(publicKey))
      return { error: "--key: not an ed25519 public key (43 base64url characters, as the node logs it at start)" };
    const rec = admission.approve(node, {
      ...(groups && { groups }),
      ...(labels && { labels }),
      ...(publicKey && { publicKey }),
    });
    if (typeof rec === "string") return { error: rec };
    await this.opts.store.durable();
    return { key: rec };
  }

  async revoke({ node }: QueryArgs<"revoke">): Promise<QueryReply<"revoke">> {
    const admission = this.central();
    if ("error" in admission) return admission;
    const rec = admission.revoke(node);
    if (typeof rec === "string") return { error: rec };
    await this.opts.store.durable();
    return { key: rec };
  }

  acl(): QueryReply<"acl"> {
    const admission = this.central();
    if ("error" in admission) return admission;
    return { bundle: this.opts.bundleVersion(), acl: admission.acl() };
  }

  async setAcl({ acl }: QueryArgs<"setAcl">): Promise<QueryReply<"setAcl">> {
    const admission = this.central();
    if ("error" in admission) return admission;
    const problem = admission.setAcl(acl);
    if (problem) return { error: `rules not changed: ${problem}` };
    await this.opts.store.durable();
    return { bundle: this.opts.bundleVersion(), acl: admission.acl() };
  }

  private central(): Admission | QueryRefusal {
    return (
      this.opts.admission ?? {
        error: `keys and rules are kept on central (${this.opts.centralNodeName}); run this on central's machine`,
      }
    );
  }

  /** A stopping node answers every pending wait at once rather than hold its socket open. */
  endWaits(): void {
    for (const answerNow of [...this.waits]) answerNow();
  }

  private unknown(id: string): QueryRefusal {
    return { error: `no message with id ${id} was sent from ${this.opts.nodeName}` };
  }

  /**
   * The messages, in full, once every one of them is settled (and that is on disk), or after `ms`
   * as they are then: the CLI's --wait learns of a result the moment it is stored, without polling.
   * Settled: final, or pending in a batch rollout that stopped (no wave will release it).
   */
  private async waitFinal(ids: string[], ms: number): Promise<QueryAnswer<"wait">> {
    const { store } = this.opts;
    const settled = (id: string) => {
      const rec = store.outgoing.get(id);
      return !rec || isFinal(rec.state) || (rec.state === "pending" && heldForGood(rec, store));
    };
    const open = new Set(ids.filter((id) => !settled(id)));
    if (open.size > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          stop();
          stopBatches();
          this.waits.delete(done);
          resolve();
        };
        this.waits.add(done);
        const timer = setTimeout(done, ms);
        const stop = store.outgoing.onFinal((id) => {
          if (open.delete(id) && open.size === 0) done();
        });
        const stopBatches = store.outgoing.onBatchEnded(() => {
          for (const id of open) if (settled(id)) open.delete(id);
          if (open.size === 0) done();
        });
      });
    }
    await store.durable().catch(() => undefined); // a final state is reported once it is stored for good
    return {
      messages: ids.map((id) => store.outgoing.get(id)).flatMap((rec) => (rec ? [messageView(rec, true, store)] : [])),
    };
  }
}

/** Why an outbox row is not an operator's message to cancel: a reply, or one of Steward's own (hello, error report, cancel). */
function ownMessageReason(rec: OutgoingRecord): string | undefined {
  if (rec.requestId !== null) return `a reply this node sends for ${rec.requestId}; cancel that request on its origin`;
  const spec = methodSpec(rec.method);
  if (spec?.cancels || spec?.errorReport || spec?.heartbeat) return `Steward's own ${rec.method} message`;
  return undefined;
}

/** The most rows one list or changes answer holds. */
const MAX_LIST = 100_000;

function listLimit(limit: number): number {
  return Number.isInteger(limit) && limit > 0 ? Math.min(limit, MAX_LIST) : 50;
}

function messageList(records: OutgoingSummary[], limit: number, store: Store): QueryAnswer<"list"> {
  return {
    messages: records.slice(0, limit).map((rec) => messageView(rec, false, store)),
    more: records.length > limit,
  };
}

/** A pending message whose rollout ended: no wave will release it. */
function heldForGood(rec: OutgoingSummary, store: Store): boolean {
  return rec.batchId !== null && store.outgoing.batch(rec.batchId)?.state !== "running";
}

/** A stored message as clients see it; `withResult` adds the reply's data and outcome, `store` its rollout. */
export function messageView(rec: OutgoingSummary, withResult: boolean, store: Store): MessageView {
  const result = rec.result;
  const batch = rec.batchId !== null && rec.wave !== null ? store.outgoing.batch(rec.batchId) : undefined;
  return {
    id: rec.id,
    toNode: rec.toNode,
    method: rec.method,
    state: rec.state,
    attempt: rec.attempt,
    reason: rec.reason,
    exitCode: rec.exitCode,
    createdAt: new Date(rec.createdAt).toISOString(),
    updatedAt: new Date(rec.updatedAt).toISOString(),
    ...(result?.rerun && { rerun: true }),
    ...(result?.interrupted && { interrupted: true }),
    // Streamed and scheduled results come back in parts; the latest part's number shows progress.
    ...(rec.state === "running" && result?.seq && { parts: result.seq }),
    ...(withResult && result && { result }),
    ...(batch &&
      rec.wave !== null && {
        batch: { id: batch.id, wave: rec.wave, waves: batch.waves, maxErrors: batch.maxErrors, state: batch.state },
      }),
  };
}
