/** The `nodes` table: the last hello of each node (on central), and what is pending for each, for `steward nodes`. */
import type Database from "better-sqlite3";
import type { GroupCommit } from "./groupCommit.js";

export interface NodeRecord {
  name: string;
  lastSeen: number | null;
  pending: number;
  failed: number;
  total: number;
}

interface NodeRow {
  name: string;
  last_seen: number | null;
  pending: number;
  failed: number;
  total: number;
}

export class NodesTable {
  private readonly stmts;

  constructor(
    db: Database.Database,
    private readonly commits: GroupCommit,
  ) {
    this.stmts = {
      hello: db.prepare(
        `INSERT INTO nodes (name, last_seen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen`,
      ),
      // From outbox_counts, kept by triggers at every move (src/store/migrations.ts): a few rows per node,
      // however many messages the outbox holds.
      list: db.prepare(
        `SELECT name, MAX(last_seen) AS last_seen, SUM(pending) AS pending, SUM(failed) AS failed, SUM(total) AS total FROM (
           SELECT name, last_seen, 0 AS pending, 0 AS failed, 0 AS total FROM nodes
           UNION ALL
           SELECT to_node, NULL, CASE WHEN state IN ('pending', 'queued', 'sent') THEN n ELSE 0 END,
                  CASE WHEN state = 'failed' THEN n ELSE 0 END, n
           FROM outbox_counts
         ) GROUP BY name ORDER BY name`,
      ),
      hellos: db.prepare(`SELECT name, last_seen FROM nodes ORDER BY name`),
    };
  }

  /** Each node's last hello (for the metrics, read at every scrape). */
  hellos(): { name: string; lastSeen: number }[] {
    return (this.stmts.hellos.all() as { name: string; last_seen: number }[]).map((r) => ({
      name: r.name,
      lastSeen: r.last_seen,
    }));
  }

  recordHello(node: string, at = Date.now()): void {
    this.commits.write(() => this.stmts.hello.run(node, at));
  }

  /** Every node heard from or sent to, with its last hello and its stored operator messages by state. */
  list(): NodeRecord[] {
    return (this.stmts.list.all() as NodeRow[]).map((r) => ({
      name: r.name,
      lastSeen: r.last_seen,
      pending: r.pending ?? 0,
      failed: r.failed ?? 0,
      total: r.total ?? 0,
    }));
  }
}
