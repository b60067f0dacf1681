/**
 * Central's registry of node keys (the `keys` table) and what its bundle is
 * made of (the `trust` table: the bundle's version and the rules). Only
 * central writes here; every other node keeps central's signed bundle in its
 * configFolder instead (src/security/trust.ts).
 *
 *   (hello with a new key) ──▶ pending ──approve──▶ approved ──revoke──▶ revoked
 *                                 └────────────────revoke──────────────────┘
 */
import type Database from "better-sqlite3";
import type { GroupCommit } from "./groupCommit.js";

export type KeyState = "pending" | "approved" | "revoked";

export interface KeyRecord {
  name: string;
  publicKey: string;
  state: KeyState;
  groups: string[];
  /** Set by the operator (`steward keys approve --labels`). */
  labels: Record<string, string>;
  /**
   * Announced by the node in its hello (its `labels` setting). The bundle carries both, the operator's
   * winning for the same key (src/node/admission.ts).
   */
  announced?: Record<string, string>;
  firstSeen: number;
  changedAt: number;
}

interface KeyRow {
  name: string;
  public_key: string;
  state: KeyState;
  groups: string;
  labels: string;
  announced_labels: string;
  first_seen: number;
  changed_at: number;
}

export class KeysTable {
  private readonly stmts;

  constructor(
    db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      get: db.prepare(`SELECT * FROM keys WHERE name = ?`),
      list: db.prepare(`SELECT * FROM keys ORDER BY name`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM keys WHERE state = 'pending'`),
      put: db.prepare(
        `INSERT INTO keys (name, public_key, state, groups, labels, announced_labels, first_seen, changed_at)
         VALUES (@name, @publicKey, @state, @groups, @labels, @announced, @firstSeen, @changedAt)
         ON CONFLICT(name) DO UPDATE SET public_key = excluded.public_key, state = excluded.state,
           groups = excluded.groups, labels = excluded.labels, announced_labels = excluded.announced_labels,
           changed_at = excluded.changed_at`,
      ),
      getTrust: db.prepare(`SELECT value FROM trust WHERE key = ?`),
      setTrust: db.prepare(
        `INSERT INTO trust (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
      ),
    };
  }

  get(name: string): KeyRecord | undefined {
    const row = this.stmts.get.get(name) as KeyRow | undefined;
    return row && toRecord(row);
  }

  list(): KeyRecord[] {
    return (this.stmts.list.all() as KeyRow[]).map(toRecord);
  }

  pendingCount(): number {
    return (this.stmts.count.get() as { n: number }).n;
  }

  put(rec: KeyRecord): void {
    this.commits.write(() =>
      this.stmts.put.run({
        ...rec,
        groups: JSON.stringify(rec.groups),
        labels: JSON.stringify(rec.labels),
        announced: JSON.stringify(rec.announced ?? {}),
      }),
    );
  }

  /** A value of the `trust` table, parsed; undefined when not set. */
  trust(key: "bundleVersion" | "acl"): unknown {
    const row = this.stmts.getTrust.get(key) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as unknown) : undefined;
  }

  setTrust(key: "bundleVersion" | "acl", value: unknown): void {
    this.commits.write(() => this.stmts.setTrust.run(key, JSON.stringify(value)));
  }
}

function toRecord(r: KeyRow): KeyRecord {
  return {
    name: r.name,
    publicKey: r.public_key,
    state: r.state,
    groups: JSON.parse(r.groups) as string[],
    labels: JSON.parse(r.labels) as Record<string, string>,
    announced: JSON.parse(r.announced_labels) as Record<string, string>,
    firstSeen: r.first_seen,
    changedAt: r.changed_at,
  };
}
