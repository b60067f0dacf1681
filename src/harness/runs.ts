/**
 * Helpers for the delivery and fault tests: a side-effect log that counts how
 * often each message id was executed on a receiver, and bulk state queries.
 * Nothing here sleeps for a fixed time; every wait polls a condition.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { listMessages, type MessageView } from "../client/client.js";
import { isFinal } from "../message/message.js";
import { type Fleet, sleepUntil } from "./fleet.js";

/** A log file every execution appends its message id to. */
export class RunsLog {
  readonly dir: string;
  readonly path: string;

  constructor(fleet: Pick<Fleet, "dir">, name: string) {
    this.dir = join(fleet.dir, "runs", name);
    mkdirSync(this.dir, { recursive: true });
    this.path = join(this.dir, "runs.log");
  }

  /** methodArgs that append this message's id to the log, then run `then` (a bash snippet). */
  args(then = ""): string[] {
    return ["bash", "-c", `echo "$STEWARD_MESSAGE_ID" >> '${this.path}'${then ? `; ${then}` : ""}`];
  }

  /** Executions per message id. */
  counts(): Map<string, number> {
    const m = new Map<string, number>();
    if (!existsSync(this.path)) return m;
    for (const line of readFileSync(this.path, "utf8").split("\n")) {
      if (line.trim() === "") continue;
      m.set(line.trim(), (m.get(line.trim()) ?? 0) + 1);
    }
    return m;
  }

  count(id: string): number {
    return this.counts().get(id) ?? 0;
  }

  /** Total number of lines. */
  total(): number {
    let n = 0;
    for (const c of this.counts().values()) n += c;
    return n;
  }
}

/** One cliCommand message for `toNode` with sensible test defaults. */
export function cmd(
  toNode: string,
  methodArgs: string[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { toNode, method: "cliCommand", methodArgs, replyMethod: "none", ...extra };
}

/** The state of many messages of one origin node in one query. */
export async function statesOf(
  fleet: Pick<Fleet, "node">,
  from: string,
  ids: string[],
): Promise<Map<string, MessageView>> {
  const all = await listMessages(fleet.node(from).socketPath, 100_000);
  const wanted = new Set(ids);
  const out = new Map<string, MessageView>();
  for (const m of all) if (wanted.has(m.id)) out.set(m.id, m);
  return out;
}

/** How many of `ids` are in one of `states`. */
export async function countIn(
  fleet: Pick<Fleet, "node">,
  from: string,
  ids: string[],
  states: string[],
): Promise<number> {
  const m = await statesOf(fleet, from, ids);
  let n = 0;
  for (const v of m.values()) if (states.includes(v.state)) n++;
  return n;
}

/** Wait until at least `n` of `ids` are in one of `states`. */
export async function waitCount(
  fleet: Fleet,
  from: string,
  ids: string[],
  n: number,
  states: string[],
  timeoutMs = 30_000,
): Promise<void> {
  let last = -1;
  await sleepUntil(
    async () => {
      last = await countIn(fleet, from, ids, states);
      return last >= n;
    },
    {
      timeoutMs,
      intervalMs: 100,
      what: () => `${n} of ${ids.length} messages to be ${states.join("/")} (last: ${last})`,
    },
  );
}

/** Wait until every id is final; returns their views. Fails with a summary of the stragglers. */
export async function waitAllFinal(
  fleet: Pick<Fleet, "node">,
  from: string,
  ids: string[],
  timeoutMs = 60_000,
): Promise<Map<string, MessageView>> {
  let last = new Map<string, MessageView>();
  await sleepUntil(
    async () => {
      last = await statesOf(fleet, from, ids);
      return ids.every((id) => isFinal(last.get(id)?.state ?? "queued"));
    },
    {
      timeoutMs,
      intervalMs: 200,
      what: () => {
        const byState = new Map<string, number>();
        for (const id of ids) {
          const s = last.get(id)?.state ?? "missing";
          byState.set(s, (byState.get(s) ?? 0) + 1);
        }
        const sample = ids.filter((id) => !isFinal(last.get(id)?.state ?? "queued")).slice(0, 3);
        return `all ${ids.length} messages to be final (states: ${JSON.stringify(Object.fromEntries(byState))}; e.g. ${sample.map((id) => JSON.stringify(last.get(id) ?? id)).join(" ")})`;
      },
    },
  );
  return last;
}

/** Ids whose state is not `done`, with state and reason, for a readable assertion message. */
export function notDone(views: Map<string, MessageView>, ids: string[]): string[] {
  return ids
    .filter((id) => views.get(id)?.state !== "done")
    .map((id) => `${id}: ${views.get(id)?.state} ${views.get(id)?.reason ?? ""}`);
}

/** Ids executed other than exactly once, as "id×n". */
export function notOnce(counts: Map<string, number>, ids: string[]): string[] {
  return ids.filter((id) => (counts.get(id) ?? 0) !== 1).map((id) => `${id}×${counts.get(id) ?? 0}`);
}

/** Lines in the runs log for ids that are not ours (there must be none). */
export function strangers(counts: Map<string, number>, ids: string[]): string[] {
  const ours = new Set(ids);
  return [...counts.keys()].filter((id) => !ours.has(id));
}

/**
 * Pids of live processes, other than this one, whose command line contains `marker` (read from /proc,
 * Linux). A zombie has exited already and is left out: only processes still running count.
 */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (cmdline.includes(marker) && !/^\d+ \(.*\) Z /.test(stat)) pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}
