/**
 * Counting what happened to every message of a chaos scenario, against what
 * was sent: accepted (answered "accepted" by the origin's input), executed
 * (lines in the receiver's runs log, one per run), replied (settled on the
 * origin by the receiver's reply), lost (accepted, never done) and run twice
 * without being marked as a re-run (guarantees 4 and 5).
 *
 * A stream feeds messages with client-chosen ids, a window at a time, so that
 * a submission cut short by a crash is simply sent again: the id makes it
 * idempotent (docs/MESSAGES.md), and the answer tells which ids the node holds.
 */
import { readFileSync } from "node:fs";
import { health, type MessageView, submit } from "../../src/client/client.js";
import { type Fleet, sleepUntil } from "../../src/harness/fleet.js";
import { cmd, countIn, notDone, type RunsLog, statesOf } from "../../src/harness/runs.js";

/** What one scenario run found. */
export interface Figures {
  scenario: string;
  accepted: number;
  /** Messages the receiver ran at least once. */
  executed: number;
  /** Runs in all (more than `executed` when some ran twice). */
  runs: number;
  /** Messages settled on the origin by a reply. */
  replied: number;
  /** Accepted, not done at the end (must be 0). */
  lost: number;
  /** Run more than once without the result saying re-run, or more than twice (must be 0). */
  double: number;
  /** Run twice after a receiver crash, and marked as a re-run (guarantee 5's crash window, docs/DELIVERY.md). */
  reruns: number;
  /** Faults injected. */
  faults: number;
  /** Longest time from a fault lifted to the first message completing after it, in seconds. */
  recoverS: number | null;
  /** Longest time from a fault lifted to every message accepted before it done, in seconds. */
  drainS: number | null;
  /** Whether every node answered at the end. */
  answering: boolean;
  seconds: number;
  notes: string[];
  /** Set when the scenario cannot run here; says why. */
  skipped?: string;
  /** Readable details of what broke, for a failing assertion. */
  problems: string[];
}

export function emptyFigures(scenario: string): Figures {
  return {
    scenario,
    accepted: 0,
    executed: 0,
    runs: 0,
    replied: 0,
    lost: 0,
    double: 0,
    reruns: 0,
    faults: 0,
    recoverS: null,
    drainS: null,
    answering: true,
    seconds: 0,
    notes: [],
    problems: [],
  };
}

/** Generous delivery settings: a message must outlive every fault a scenario injects. */
export const PATIENT = { ACKTimeout: 2, retries: 2000, replyACKTimeout: 2, replyRetries: 2000, methodTimeout: 60 };

export interface StreamOptions {
  fleet: Fleet;
  from: string;
  toNode: string;
  runs: RunsLog;
  /** Prefix of the client-chosen ids. */
  prefix: string;
  total: number;
  chunk?: number;
  /** At most this many accepted but not yet run. */
  window?: number;
  /** More message fields (defaults: PATIENT). */
  extra?: Record<string, unknown>;
  /** A bash snippet each run does after logging its id. */
  then?: string;
}

/**
 * Feeds `total` cliCommand messages from one node to another, each logging
 * its id on the receiver. Survives the origin going away mid-submission.
 */
export class Stream {
  /** Ids the origin answered "accepted" for. */
  readonly accepted = new Set<string>();
  private next = 0;
  private stopped = false;
  private task: Promise<void> | undefined;

  constructor(private readonly o: StreamOptions) {}

  idOf(i: number): string {
    return `${this.o.prefix}-${i}`;
  }

  get ids(): string[] {
    return [...this.accepted];
  }

  /** Executions so far (one line per run in the runs log). */
  executions(): number {
    return this.o.runs.total();
  }

  start(): this {
    this.task = this.feed();
    return this;
  }

  /** Wait until the whole stream was accepted. */
  async finished(): Promise<void> {
    await this.task;
  }

  stop(): void {
    this.stopped = true;
  }

  private async feed(): Promise<void> {
    const { fleet, from, total } = this.o;
    const chunk = this.o.chunk ?? 50;
    const window = this.o.window ?? 200;
    while (this.next < total && !this.stopped) {
      const n = Math.min(chunk, total - this.next);
      const batch = Array.from({ length: n }, (_, k) =>
        cmd(this.o.toNode, this.o.runs.args(this.o.then), {
          id: this.idOf(this.next + k),
          ...PATIENT,
          ...this.o.extra,
        }),
      );
      let answers: Awaited<ReturnType<typeof submit>>;
      try {
        answers = await submit(fleet.node(from).socketPath, JSON.stringify(batch));
      } catch {
        // The origin is down (a scenario killed it): send the same ids again once it is back.
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const ok = answers.filter((a) => a.ok);
      if (ok.length !== n) {
        // A submission cut short: some answers missing. Send the batch again (idempotent by id).
        for (const a of ok) if (a.ok) this.accepted.add(a.id);
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      for (const a of ok) if (a.ok) this.accepted.add(a.id);
      this.next += n;
      const sent = this.next;
      while (!this.stopped && sent - this.distinctRuns() > window) await new Promise((r) => setTimeout(r, 50));
    }
  }

  private distinctRuns(): number {
    return this.o.runs.counts().size;
  }
}

/** Seconds since `t0` (ms), rounded to 0.1. */
export function since(t0: number): number {
  return Math.round((Date.now() - t0) / 100) / 10;
}

/**
 * After a fault is lifted at `lifted` (ms): seconds until the first of `ids`
 * not done at that moment is done (traffic flows again), and until all of them
 * are (the backlog drained). Null when it did not happen within the timeout.
 */
export async function recovery(
  fleet: Pick<Fleet, "node">,
  from: string,
  ids: string[],
  lifted: number,
  timeoutMs = 180_000,
): Promise<{ recoverS: number | null; drainS: number | null }> {
  let base: number | undefined;
  let recoverS: number | null = null;
  let drainS: number | null = null;
  try {
    await sleepUntil(
      async () => {
        const done = await countIn(fleet, from, ids, ["done"]);
        base ??= done;
        if (recoverS === null && (done > base || done === ids.length)) recoverS = since(lifted);
        if (done === ids.length) drainS = since(lifted);
        return drainS !== null;
      },
      { timeoutMs, intervalMs: 100, what: "the backlog to drain" },
    );
  } catch {
    // Reported as null: the figures show it.
  }
  return { recoverS, drainS };
}

export function maxOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/**
 * Wait until every accepted id is final on the origin (or the time is up),
 * then count: lost, run twice, re-runs. `expectFailed` ids are allowed to end
 * failed (a scenario's deliberate timeouts); they still count as replied.
 * `receiverCrashed` says the scenario crashed the receiver, so that a second run marked re-run is allowed.
 */
export async function settle(
  fig: Figures,
  fleet: Pick<Fleet, "node">,
  from: string,
  ids: string[],
  runs: RunsLog | undefined,
  opts: { timeoutMs?: number; expectFailed?: Set<string>; receiverCrashed?: boolean } = {},
): Promise<Map<string, MessageView>> {
  const final = ["done", "failed", "expired", "cancelled"];
  let views = new Map<string, MessageView>();
  try {
    await sleepUntil(
      async () => {
        views = await statesOf(fleet, from, ids);
        return ids.every((id) => final.includes(views.get(id)?.state ?? ""));
      },
      { timeoutMs: opts.timeoutMs ?? 120_000, intervalMs: 250, what: "every message to be final" },
    );
  } catch {
    views = await statesOf(fleet, from, ids).catch(() => views);
  }
  // The runs log line is written before the reply: by now every run that settled a message is in it.
  const counts = runs?.counts() ?? new Map<string, number>();
  const expectFailed = opts.expectFailed ?? new Set<string>();
  fig.accepted += ids.length;
  const lost = notDone(views, ids).filter(
    (line) => !(expectFailed.has(line.split(":")[0] ?? "") && line.includes(": failed")),
  );
  fig.lost += lost.length;
  if (lost.length > 0)
    fig.problems.push(`lost: ${lost.slice(0, 5).join("; ")}${lost.length > 5 ? ` … (${lost.length})` : ""}`);
  for (const id of ids) {
    const v = views.get(id);
    if (v && (v.state === "done" || v.state === "failed") && (v.exitCode !== null || v.reason !== null || v.rerun))
      fig.replied++;
    if (!runs) continue;
    const n = counts.get(id) ?? 0;
    if (n >= 1) fig.executed++;
    fig.runs += n;
    // Only a crash of the receiver itself may cut a run short (guarantee 5); without one, a re-run is a double run.
    if (n === 2 && v?.rerun && opts.receiverCrashed) fig.reruns++;
    else if (n > 1) {
      fig.double++;
      fig.problems.push(`ran ${n} times${v?.rerun ? " (marked rerun)" : " without being marked rerun"}: ${id}`);
    }
  }
  return views;
}

/** Resident memory of a process in KiB (Linux /proc), or undefined once it is gone. */
export function rssKiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every node of the fleet answers on its socket. */
export async function answering(fleet: Pick<Fleet, "nodes">): Promise<boolean> {
  for (const n of fleet.nodes.values()) {
    try {
      await health(n.socketPath);
    } catch {
      return false;
    }
  }
  return true;
}

/** Fold the recovery of one fault into the figures (the longest counts). */
export async function noteRecovery(
  fig: Figures,
  watch: Promise<{ recoverS: number | null; drainS: number | null }>,
): Promise<void> {
  const r = await watch;
  fig.recoverS = maxOf(fig.recoverS, r.recoverS);
  fig.drainS = maxOf(fig.drainS, r.drainS);
}
