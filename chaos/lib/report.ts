/** The figures of a chaos run as a Markdown table (printed, and kept in docs/RELIABILITY.md). */
import type { Figures } from "./tally.js";

const s = (v: number | null): string => (v === null ? "–" : `${v}`);

export function table(results: Figures[]): string {
  const head = [
    "| scenario | faults | accepted | executed | runs | replied | lost | double | re-runs (guarantee 5) | recover s | drain s | answering | run s | notes |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|",
  ];
  const rows = results.map((f) =>
    f.skipped
      ? `| ${f.scenario} | – | – | – | – | – | – | – | – | – | – | – | ${f.seconds} | not run here: ${f.skipped} |`
      : `| ${f.scenario} | ${f.faults} | ${f.accepted} | ${f.executed} | ${f.runs} | ${f.replied} | **${f.lost}** | **${f.double}** | ${f.reruns} | ${s(f.recoverS)} | ${s(f.drainS)} | ${f.answering ? "yes" : "**NO**"} | ${f.seconds} | ${f.notes.join("; ")} |`,
  );
  return [...head, ...rows].join("\n");
}
