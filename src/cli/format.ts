/** Plain-text tables and time for the CLI. */
import type { MessageView } from "../client/client.js";

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

export function ago(ms: number | null, now = Date.now()): string {
  if (ms === null) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** "sent (attempt 2)", "done (exit 0)", "failed: reason" */
export function stateText(
  m: Pick<MessageView, "state" | "attempt" | "exitCode" | "reason" | "rerun" | "interrupted" | "parts" | "batch">,
): string {
  switch (m.state) {
    case "pending":
      if (!m.batch) return "pending";
      return `pending (wave ${m.batch.wave}/${m.batch.waves}${m.batch.state === "stopped" ? ", rollout stopped" : ""})`;
    case "running":
      return m.parts ? `running (${m.parts} part${m.parts === 1 ? "" : "s"} back)` : "running";
    case "sent":
      return `sent (attempt ${m.attempt})`;
    case "done":
      return `done (exit ${m.exitCode ?? "?"})${m.rerun ? " re-run" : ""}${m.interrupted ? " interrupted, run again" : ""}`;
    case "cancelled":
      // Its reason says by whom: "cancelled by alice@central".
      if (m.reason?.startsWith("cancelled")) return m.reason;
      return `cancelled${m.reason ? `: ${m.reason}` : ""}`;
    case "failed":
    case "expired":
      return `${m.state}${m.reason ? `: ${m.reason}` : ""}`;
    default:
      return m.state;
  }
}
