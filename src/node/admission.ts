/**
 * Central's side of trust: the registry of node keys, and the bundle made
 * from it. A node's key arrives with its hello and waits for approval
 * (`steward keys approve NODE`), unless autoApproveKeys is set. Every change —
 * a key approved or revoked, new rules — makes a new bundle, one version up,
 * signed by central and sent to every node at once; a node whose hello shows
 * an older version gets it again on its own subject.
 */
import { bundleBroadcast, bundleSubject } from "../delivery/subjects.js";
import type { Transport } from "../delivery/transport.js";
import { encode } from "../delivery/wire.js";
import type { Logger } from "../log.js";
import { formatLabels, type Labels, labelsProblem, sameLabels } from "../message/labels.js";
import { type Acl, aclProblem, defaultAcl } from "../security/acl.js";
import { type Bundle, BUNDLE_CONTEXT } from "../security/bundle.js";
import { seal } from "../security/frame.js";
import type { Trust } from "../security/trust.js";
import type { KeyRecord, Store } from "../store/store.js";
import type { Hello } from "./trustLink.js";

/** Most keys waiting for approval: hellos under made-up names must not fill central's store. */
export const MAX_PENDING_KEYS = 1000;

/**
 * Keys admitted by autoApproveKeys go out together: the bundle leaves once no new key came for
 * AUTO_APPROVE_QUIET_MS, or AUTO_APPROVE_MAX_MS after the first key waiting. A fleet of a thousand
 * nodes starting at once makes a few bundles, not a thousand (each sent to, and checked by, every node).
 */
const AUTO_APPROVE_QUIET_MS = 500;
const AUTO_APPROVE_MAX_MS = 5000;

export interface AdmissionOptions {
  trust: Trust;
  store: Store;
  transport: Transport;
  autoApprove: boolean;
  /** Central's own `labels` setting: its entry in the bundle carries them. */
  labels: Labels;
  log: Logger;
}

export class Admission {
  private warnedFull = false;
  private readonly warnedLabels = new Set<string>();
  private pendingPublish: NodeJS.Timeout | undefined;
  /** When the oldest key not yet in a bundle was admitted. */
  private pendingSince: number | undefined;

  constructor(private readonly opts: AdmissionOptions) {}

  /** At start: a new bundle from the registry, so a restart never serves an older one. */
  start(): void {
    this.publish();
  }

  /** A checked hello reached central. */
  hello({ node, data, fresh }: Hello): void {
    const { store, log, trust, transport, autoApprove } = this.opts;
    if (node === trust.identity.name || !data || !fresh) return;
    const rec = store.keys.get(node);
    const announced = this.announcedLabels(node, data.labels);
    if (!rec) {
      if (store.keys.pendingCount() >= MAX_PENDING_KEYS) {
        if (!this.warnedFull)
          log.warn(`${MAX_PENDING_KEYS} keys wait for approval already; hellos from new nodes are ignored`, { node });
        this.warnedFull = true;
        return;
      }
      const at = Date.now();
      const state = autoApprove ? "approved" : "pending";
      store.keys.put({
        name: node,
        publicKey: data.publicKey,
        state,
        groups: [],
        labels: {},
        announced,
        firstSeen: at,
        changedAt: at,
      });
      if (autoApprove) {
        log.warn("admitted a new node's key (autoApproveKeys is on: meant for labs and demos)", {
          node,
          key: data.publicKey,
        });
        // Central trusts the key at once; the other nodes learn of it with the next bundle.
        trust.admitNow(node, data.publicKey);
        this.publishSoon();
      } else {
        log.warn(`a new node's key waits for approval: steward keys approve ${node}`, { node, key: data.publicKey });
      }
      return;
    }
    if (rec.publicKey === data.publicKey && !sameLabels(rec.announced ?? {}, announced)) {
      store.keys.put({ ...rec, announced });
      log.info("a node announces new labels", { node, labels: formatLabels(announced) });
      // The node learns of its labels with the new bundle, as every other node does.
      if (rec.state === "approved") return this.publishSoon();
    }
    if (rec.state === "approved" && rec.publicKey === data.publicKey && data.bundle < trust.version) {
      const bytes = trust.signedBundle;
      if (bytes) transport.publish(bundleSubject(node, trust.centralName), bytes);
    }
  }

  /**
   * A new bundle shortly, with whatever else changes meanwhile: it leaves once nothing changed for
   * AUTO_APPROVE_QUIET_MS, or AUTO_APPROVE_MAX_MS after the first change waiting.
   */
  private publishSoon(): void {
    this.pendingSince ??= Date.now();
    clearTimeout(this.pendingPublish);
    const wait = Math.min(AUTO_APPROVE_QUIET_MS, this.pendingSince + AUTO_APPROVE_MAX_MS - Date.now());
    this.pendingPublish = setTimeout(
      () => {
        try {
          this.publish();
        } catch (err) {
          this.opts.log.error("cannot send a new bundle", { reason: (err as Error).message });
        }
      },
      Math.max(0, wait),
    );
  }

  /** The labels a hello announces, checked: a node's own setting is checked at its start, so bad ones are a forgery or a bug. */
  private announcedLabels(node: string, labels: unknown): Labels {
    if (labels === undefined) return {};
    const problem = labelsProblem(labels);
    if (!problem) return labels as Labels;
    if (!this.warnedLabels.has(node) && this.warnedLabels.size < MAX_PENDING_KEYS)
      this.opts.log.warn("a node's hello announces labels that are not valid; they are ignored", { node, problem });
    this.warnedLabels.add(node);
    return {};
  }

  /** The version of the bundle that lists every key approved so far (one more than held while one is to go out). */
  get bundleVersion(): number {
    return this.opts.trust.version + (this.pendingPublish ? 1 : 0);
  }

  list(): KeyRecord[] {
    const own = this.opts.trust.identity;
    const self: KeyRecord = {
      name: own.name,
      publicKey: own.publicKey,
      state: "approved",
      groups: [],
      labels: {},
      announced: this.opts.labels,
      firstSeen: 0,
      changedAt: 0,
    };
    return [self, ...this.opts.store.keys.list().filter((k) => k.name !== own.name)];
  }

  /** Approve a node's key (pending or revoked), optionally setting its groups and labels. */
  approve(
    node: string,
    change: { groups?: string[]; labels?: Record<string, string>; publicKey?: string } = {},
  ): KeyRecord | string {
    const { store, log } = this.opts;
    const rec = store.keys.get(node);
    const publicKey = change.publicKey ?? rec?.publicKey;
    if (!publicKey)
      return `no key known for ${node}: it has not said hello to central yet (start it with centralNodeName=${this.opts.trust.identity.name}), or give its key with --key`;
    const at = Date.now();
    const next: KeyRecord = {
      name: node,
      publicKey,
      state: "approved",
      groups: change.groups ?? rec?.groups ?? [],
      labels: change.labels ?? rec?.labels ?? {},
      announced: rec?.announced ?? {},
      firstSeen: rec?.firstSeen ?? at,
      changedAt: at,
    };
    store.keys.put(next);
    log.info("approved a node's key", { node, key: publicKey });
    this.publish();
    return next;
  }

  revoke(node: string): KeyRecord | string {
    const { store, log, trust } = this.opts;
    if (node === trust.identity.name) return "central's own key cannot be revoked; give central a new key instead";
    const rec = store.keys.get(node);
    if (!rec) return `no key known for ${node}`;
    const next: KeyRecord = { ...rec, state: "revoked", changedAt: Date.now() };
    store.keys.put(next);
    log.warn("revoked a node's key: every node drops its messages once it has the new bundle", { node });
    this.publish();
    return next;
  }

  acl(): Acl {
    return (this.opts.store.keys.trust("acl") as Acl | undefined) ?? defaultAcl(this.opts.trust.identity.name);
  }

  setAcl(acl: Acl): string | undefined {
    const problem = aclProblem(acl);
    if (problem) return problem;
    this.opts.store.keys.setTrust("acl", acl);
    this.opts.log.info("new rules", { rules: acl.rules.length });
    this.publish();
    return undefined;
  }

  /** Build, sign, take and send a new bundle from the registry. */
  publish(): Bundle {
    clearTimeout(this.pendingPublish);
    this.pendingPublish = undefined;
    this.pendingSince = undefined;
    const { store, trust, transport } = this.opts;
    const own = trust.identity;
    const version = Math.max(Number(store.keys.trust("bundleVersion") ?? 0), trust.version) + 1;
    const nodes: Bundle["nodes"] = { [own.name]: { key: own.publicKey, groups: [], labels: this.opts.labels } };
    for (const k of store.keys.list()) {
      if (k.state === "approved" && k.name !== own.name)
        nodes[k.name] = { key: k.publicKey, groups: k.groups, labels: mergedLabels(k) };
    }
    const bundle: Bundle = { version, central: own.name, issuedAt: Date.now(), nodes, acl: this.acl() };
    store.keys.setTrust("bundleVersion", version);
    const bytes = seal(own, BUNDLE_CONTEXT, encode(bundle));
    const offer = trust.offer(bytes, "central itself");
    if (!offer.taken) throw new Error(`central refused its own bundle: ${offer.reason}`);
    transport.publish(bundleBroadcast(own.name), bytes);
    return bundle;
  }

  /** No bundle is left to publish after the node stops. */
  close(): void {
    clearTimeout(this.pendingPublish);
  }

  /** Send the bundle held to every node (after central's link comes back). */
  broadcast(): void {
    const bytes = this.opts.trust.signedBundle;
    if (bytes) this.opts.transport.publish(bundleBroadcast(this.opts.trust.centralName), bytes);
  }
}

/**
 * The labels a node's bundle entry carries: those it announces, and over them those the operator set, which
 * win for the same key. A node can so never take a label away from the operator; what it may add, and why
 * rules name a caller only by node or group, is in docs/SECURITY.md ("Labels and groups").
 */
export function mergedLabels(rec: Pick<KeyRecord, "labels" | "announced">): Labels {
  return { ...rec.announced, ...rec.labels };
}
