/**
 * What this node trusts: its own key, central's key, and the last good
 * bundle from central (the admitted nodes' keys and the rules). Kept in
 * `configFolder` so that a node works from it while central is away:
 *
 *   central.pub    central's public key, pinned on first contact (or given by the centralPublicKey setting)
 *   bundle         the last good bundle, exactly as central signed it
 *
 * A bundle is taken only when central signed it and it is newer than the
 * one held. Until a node has central's key it trusts only itself: every
 * other sender's message is dropped unacknowledged (the sender re-sends).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { hasLabels, type Labels } from "../message/labels.js";
import { type Acl, defaultAcl, type Member } from "./acl.js";
import { type Bundle, BUNDLE_CONTEXT, bundleProblem } from "./bundle.js";
import { open, readHeader, verifyHeader } from "./frame.js";
import { type Identity, parsePublicKey, type PublicKey } from "./identity.js";

export const CENTRAL_KEY_FILE = "central.pub";
export const BUNDLE_FILE = "bundle";

export interface TrustOptions {
  identity: Identity;
  configFolder: string;
  centralNodeName: string;
  /** Central's public key from the settings; empty = pin it on first contact (when `pinCentralKey`). */
  centralPublicKey: string;
  pinCentralKey: boolean;
  log: Logger;
}

export type Offer = { taken: true; bundle: Bundle } | { taken: false; reason: string; stale?: boolean };

export class Trust {
  private centralKey: PublicKey | undefined;
  private bundle: Bundle | undefined;
  private bundleBytes: Uint8Array | undefined;
  private keys = new Map<string, PublicKey>();
  private readonly ownKey: PublicKey;
  private readonly listeners: ((b: Bundle) => void)[] = [];

  constructor(private readonly opts: TrustOptions) {
    this.ownKey = parsePublicKey(opts.identity.publicKey) as PublicKey;
    this.loadCentralKey();
    this.loadBundle();
  }

  get identity(): Identity {
    return this.opts.identity;
  }

  /** The name of the node whose key is the root of trust. */
  get centralName(): string {
    return this.opts.centralNodeName;
  }

  get isCentral(): boolean {
    return this.opts.identity.name === this.opts.centralNodeName;
  }

  /** The bundle's version, 0 before the first. */
  get version(): number {
    return this.bundle?.version ?? 0;
  }

  /** The signed bytes of the bundle held, to hand on. */
  get signedBundle(): Uint8Array | undefined {
    return this.bundleBytes;
  }

  get hasCentralKey(): boolean {
    return this.centralKey !== undefined;
  }

  get acl(): Acl {
    return this.bundle?.acl ?? defaultAcl(this.opts.centralNodeName);
  }

  /** The key a message signed by `name` is checked with: its own, central's, or an admitted one. */
  keyOf = (name: string): PublicKey | undefined => {
    if (name === this.opts.identity.name) return this.ownKey;
    if (name === this.opts.centralNodeName) return this.centralKey;
    return this.keys.get(name);
  };

  /** A node as the rules see it. */
  member(name: string): Member {
    const n = this.bundle?.nodes[name];
    return { name, groups: n?.groups ?? [], labels: n?.labels ?? {} };
  }

  /** Every node the bundle admits (central included), by name. */
  admittedNames(): string[] {
    return Object.keys(this.bundle?.nodes ?? {}).sort();
  }

  /** The admitted nodes that carry every one of `wanted` (labels as the bundle has them), by name. */
  nodesWithLabels(wanted: Readonly<Labels>): string[] {
    return this.admittedNames().filter((name) => hasLabels(this.member(name).labels, wanted));
  }

  /** Is `name` admitted (a key held for it)? */
  admitted(name: string): boolean {
    return this.keyOf(name) !== undefined;
  }

  /**
   * Central only: trust a key it has just admitted at once, before the bundle that lists it goes out (central
   * batches the bundles of keys it admits by itself). The next bundle taken replaces this.
   */
  admitNow(name: string, publicKey: string): void {
    const key = parsePublicKey(publicKey);
    if (this.isCentral && key) this.keys.set(name, key);
  }

  /** Called with every new bundle taken. */
  onBundle(listener: (b: Bundle) => void): void {
    this.listeners.push(listener);
  }

  /** A signed bundle, from central or the disk: taken when central signed it and it is newer. */
  offer(bytes: Uint8Array, from = "the broker"): Offer {
    const header = readHeader(bytes);
    if (!header) return { taken: false, reason: "not a signed bundle" };
    if (header.signer !== this.opts.centralNodeName)
      return { taken: false, reason: `signed by ${header.signer}, not by central (${this.opts.centralNodeName})` };
    let pinning: PublicKey | undefined;
    let value: unknown;
    if (!this.centralKey) {
      if (!this.opts.pinCentralKey)
        return { taken: false, reason: "central's key is not known here; set centralPublicKey (pinCentralKey is off)" };
      // First contact: the bundle names central's key; it must also be the key that signed it.
      try {
        value = JSON.parse(Buffer.from(header.body).toString("utf8"));
      } catch {
        return { taken: false, reason: "not JSON" };
      }
      const claimed = (value as Partial<Bundle> | null)?.nodes?.[this.opts.centralNodeName]?.key;
      pinning = typeof claimed === "string" ? parsePublicKey(claimed) : undefined;
      if (!pinning) return { taken: false, reason: "names no key for central" };
    }
    const opened = verifyHeader(header, BUNDLE_CONTEXT, this.centralKey ?? pinning);
    if (!opened.ok) return { taken: false, reason: opened.problem };
    try {
      value ??= JSON.parse(Buffer.from(opened.body).toString("utf8"));
    } catch {
      return { taken: false, reason: "not JSON" };
    }
    const problem = bundleProblem(value);
    if (problem) return { taken: false, reason: `bad bundle: ${problem}` };
    const bundle = value as Bundle;
    if (bundle.version <= this.version)
      return { taken: false, stale: true, reason: `version ${bundle.version}, not newer than ${this.version}` };
    if (pinning) this.pin(pinning, from);
    this.install(bundle, bytes);
    return { taken: true, bundle };
  }

  private install(bundle: Bundle, bytes: Uint8Array): void {
    this.bundle = bundle;
    this.bundleBytes = bytes;
    const before = this.keys;
    this.keys = new Map(
      Object.entries(bundle.nodes).flatMap(([name, n]) => {
        // The same key as in the last bundle: the same object (and whatever it has prepared for checking).
        const held = before.get(name);
        const key = held?.text === n.key ? held : parsePublicKey(n.key);
        return key ? [[name, key] as const] : [];
      }),
    );
    // Written whole, then renamed: a crash never leaves half a bundle.
    const path = join(this.opts.configFolder, BUNDLE_FILE);
    try {
      writeFileSync(`${path}.tmp`, bytes, { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    } catch (err) {
      this.opts.log.warn("cannot keep central's bundle on disk; it holds until the next restart", {
        reason: (err as Error).message,
      });
    }
    for (const l of this.listeners) l(bundle);
  }

  private pin(key: PublicKey, from: string): void {
    this.centralKey = key;
    const raw = key.text;
    writeFileSync(join(this.opts.configFolder, CENTRAL_KEY_FILE), `${raw}\n`, { mode: 0o600 });
    this.opts.log.warn(
      `PINNED central's key on first contact: ${this.opts.centralNodeName} = ${raw}. From now on only this key is trusted for central; ` +
        `check it against "steward keys list" on central, or set centralPublicKey (and pinCentralKey=0) to never trust on first contact`,
      { from },
    );
  }

  private loadCentralKey(): void {
    const { identity, centralNodeName, centralPublicKey, configFolder, log } = this.opts;
    if (identity.name === centralNodeName) {
      this.centralKey = this.ownKey;
      return;
    }
    const path = join(configFolder, CENTRAL_KEY_FILE);
    const pinned = existsSync(path) ? readFileSync(path, "utf8").trim() : "";
    const raw = centralPublicKey || pinned;
    if (!raw) return;
    const key = parsePublicKey(raw);
    if (!key) {
      log.error(`central's public key is not an ed25519 key (${centralPublicKey ? "centralPublicKey" : path})`, {
        raw,
      });
      return;
    }
    if (centralPublicKey && pinned && pinned !== centralPublicKey)
      log.warn("centralPublicKey differs from the key pinned earlier; using centralPublicKey", { path });
    this.centralKey = key;
  }

  private loadBundle(): void {
    const path = join(this.opts.configFolder, BUNDLE_FILE);
    if (!existsSync(path) || !this.centralKey) return;
    const bytes = readFileSync(path);
    const header = readHeader(bytes);
    const opened = header && verifyHeader(header, BUNDLE_CONTEXT, this.centralKey);
    let value: unknown;
    let problem = opened?.ok ? undefined : (opened?.problem ?? "not a signed bundle");
    if (opened?.ok) {
      try {
        value = JSON.parse(Buffer.from(opened.body).toString("utf8"));
        problem = bundleProblem(value);
      } catch {
        problem = "not JSON";
      }
    }
    if (problem) {
      this.opts.log.error("the bundle kept on disk is not valid; waiting for a new one from central", {
        path,
        problem,
      });
      return;
    }
    this.bundle = value as Bundle;
    this.keys = new Map(Object.entries(this.bundle.nodes).map(([n, a]) => [n, parsePublicKey(a.key) as PublicKey]));
    this.bundleBytes = bytes;
  }

  /** Verify a frame from the broker against the key of its signer. */
  open(bytes: Uint8Array, subject: string): ReturnType<typeof open> {
    return open(bytes, subject, this.keyOf);
  }
}
