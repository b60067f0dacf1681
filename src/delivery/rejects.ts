/**
 * What a node does with traffic that fails verification (unsigned, signed
 * by a key it does not hold, a bad signature, a sender claiming another
 * name): drop it without an answer, count it, and say so — once per sender
 * and reason in each interval in the log, and to central at most once per
 * sender in each interval, with how many were dropped meanwhile. A flood of
 * forgeries costs the node a counter increment each, not a log line or a
 * stored message each.
 */
import type { Logger } from "../log.js";
import type { ErrorReport } from "../message/message.js";
import { methodOf } from "./subjects.js";

/** Seconds between two log lines (or two reports) about the same sender. */
export const REJECT_INTERVAL_MS = 60_000;

export interface RejectsOptions {
  nodeName: string;
  log: Logger;
  /** Counted per reason in the metrics. */
  count: (reason: string) => void;
  reportError: (report: ErrorReport) => void;
}

export class Rejects {
  private lastLogged = new Map<string, { at: number; dropped: number }>();
  private lastReported = new Map<string, { at: number; dropped: number }>();

  constructor(private readonly opts: RejectsOptions) {}

  /** A frame on `subject` was dropped: `kind` is the counted reason, `problem` says more. */
  drop(subject: string, signer: string | undefined, kind: string, problem: string): void {
    const { log, count, reportError, nodeName } = this.opts;
    count(kind);
    const who = signer ?? "(unsigned)";
    const now = Date.now();
    const logged = this.tick(this.lastLogged, `${who}\u0000${kind}`, now);
    if (logged !== undefined)
      log.warn("dropped a message that failed verification", {
        subject,
        signer: who,
        reason: problem,
        ...(logged > 0 && { droppedSinceLastLine: logged }),
      });
    const reported = this.tick(this.lastReported, who, now);
    if (reported !== undefined)
      reportError({
        toNode: nodeName,
        fromNode: who,
        method: methodOf(subject),
        reason: `dropped unverified traffic (${kind}: ${problem})${reported > 0 ? `, and ${reported} more like it since the last report` : ""}`,
      });
  }

  /** undefined: within the interval (counted); else how many were dropped since the last time. */
  private tick(map: Map<string, { at: number; dropped: number }>, key: string, now: number): number | undefined {
    const last = map.get(key);
    if (last && now - last.at < REJECT_INTERVAL_MS) {
      last.dropped++;
      return undefined;
    }
    // Bounded: a flood of made-up names must not grow the map without end.
    if (map.size > 10_000) map.clear();
    map.set(key, { at: now, dropped: 0 });
    return last?.dropped ?? 0;
  }
}
