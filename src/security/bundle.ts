/**
 * Central's bundle: the admitted nodes (name → public key, groups, labels)
 * and the authorization rules, as one versioned document signed by central.
 * It is signed for a fixed subject rather than the one it travels on, so
 * that a node can keep the signed bytes on disk and check them again at its
 * next start, and central can send the same bytes to one node or to all.
 */
import { badTokenReason } from "../message/names.js";
import { type Acl, aclProblem } from "./acl.js";
import { parsePublicKey } from "./identity.js";

/** The "subject" every bundle is signed for. */
export const BUNDLE_CONTEXT = "steward.bundle";

export interface AdmittedNode {
  key: string;
  groups: string[];
  labels: Record<string, string>;
}

export interface Bundle {
  /** Goes up by one with every change; a node refuses one older than (or as old as) the one it holds. */
  version: number;
  central: string;
  /** When central signed it (ms since the epoch; for people, never compared with a clock). */
  issuedAt: number;
  nodes: Record<string, AdmittedNode>;
  acl: Acl;
}

/** Why `value` is not a bundle, or undefined when it is one. */
export function bundleProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object") return "not an object";
  const b = value as Partial<Bundle>;
  if (!Number.isSafeInteger(b.version) || (b.version as number) < 1) return "version is not a whole number from 1";
  if (typeof b.central !== "string" || typeof b.issuedAt !== "number") return "central or issuedAt missing";
  if (b.nodes === null || typeof b.nodes !== "object") return "nodes missing";
  for (const [name, n] of Object.entries(b.nodes)) {
    if (badTokenReason(name)) return `node name ${JSON.stringify(name)} ${badTokenReason(name)}`;
    if (!n || typeof n.key !== "string" || !parsePublicKey(n.key)) return `${name}: not an ed25519 public key`;
    if (!Array.isArray(n.groups) || !n.groups.every((g) => typeof g === "string")) return `${name}: groups`;
    if (n.labels === null || typeof n.labels !== "object") return `${name}: labels`;
  }
  return aclProblem(b.acl);
}
