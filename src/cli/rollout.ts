/**
 * What `steward send --wait` says about a batch rollout: each wave as it starts and ends, and a
 * summary at the end (see src/delivery/batch.ts for how the node runs one).
 */
import type { MessageView } from "../client/client.js";
import { isRolloutError } from "../delivery/batch.js";
import { FINAL_STATES } from "../message/message.js";

/** The exit status of `steward send --wait` when a rollout stopped at its maxErrors. */
export const ROLLOUT_STOPPED_EXIT = 3;

type InRollout = MessageView & { batch: NonNullable<MessageView["batch"]> };

export class RolloutProgress {
  private readonly said = new Set<string>();

  constructor(private readonly write: (line: string) => void) {}

  /** Say which waves started and ended since the last round. */
  round(latest: ReadonlyMap<string, MessageView>): void {
    for (const [batchId, waves] of rollouts(latest)) {
      for (const [wave, members] of waves) {
        const first = members[0] as InRollout;
        const label = `wave ${wave}/${first.batch.waves}`;
        const startKey = `${batchId} ${wave} started`;
        if (!this.said.has(startKey) && members.some((m) => m.state !== "pending")) {
          this.said.add(startKey);
          this.write(`${label}: ${members.map((m) => m.toNode).join(", ")}`);
        }
        const endKey = `${batchId} ${wave} ended`;
        if (!this.said.has(endKey) && members.every((m) => FINAL_STATES.includes(m.state))) {
          this.said.add(endKey);
          const failed = members.filter(isRolloutError).length;
          const cancelled = members.filter((m) => m.state === "cancelled").length;
          this.write(
            `${label} ended: ${members.length - failed - cancelled} done, ${failed} failed` +
              (cancelled > 0 ? `, ${cancelled} cancelled` : ""),
          );
        }
      }
    }
  }
}

/**
 * One summary line per rollout, and whether one stopped at its maxErrors:
 *   rollout: 4 done, 0 failed, 0 pending (2 waves)
 *   rollout stopped after wave 1/2 (more than max-errors 0 failed): 1 done, 1 failed, 2 pending; not sent: ship3, ship4
 */
export function rolloutSummary(latest: ReadonlyMap<string, MessageView>): { lines: string[]; stopped: boolean } {
  const lines: string[] = [];
  let stopped = false;
  for (const waves of rollouts(latest).values()) {
    const members = [...waves.values()].flat();
    const batch = (members[0] as InRollout).batch;
    const failed = members.filter(isRolloutError).length;
    const pending = members.filter((m) => m.state === "pending");
    const done = members.filter((m) => m.state === "done" && !isRolloutError(m)).length;
    const cancelled = members.filter((m) => m.state === "cancelled").length;
    const counts = `${done} done, ${failed} failed, ${pending.length} pending${cancelled > 0 ? `, ${cancelled} cancelled` : ""}`;
    if (batch.state === "stopped") {
      stopped = true;
      lines.push(
        `rollout stopped after wave ${batch.wave}/${batch.waves} (more than max-errors ${batch.maxErrors} failed): ` +
          `${counts}; not sent: ${pending.map((m) => m.toNode).join(", ")}`,
      );
    } else if (batch.state === "running") {
      lines.push(`rollout still running (wave ${currentWave(members)}/${batch.waves}): ${counts}`);
    } else {
      lines.push(`rollout: ${counts} (${batch.waves} wave${batch.waves === 1 ? "" : "s"})`);
    }
  }
  return { lines, stopped };
}

/** The highest wave that has started. */
function currentWave(members: InRollout[]): number {
  return Math.max(1, ...members.filter((m) => m.state !== "pending").map((m) => m.batch.wave));
}

/** The messages of each rollout, by wave in order. */
function rollouts(latest: ReadonlyMap<string, MessageView>): Map<string, Map<number, InRollout[]>> {
  const out = new Map<string, Map<number, InRollout[]>>();
  for (const m of latest.values()) {
    if (!m.batch) continue;
    let waves = out.get(m.batch.id);
    if (!waves) out.set(m.batch.id, (waves = new Map<number, InRollout[]>()));
    const members = waves.get(m.batch.wave) ?? [];
    members.push(m as InRollout);
    waves.set(m.batch.wave, members);
  }
  for (const [id, waves] of out) out.set(id, new Map([...waves].sort(([a], [b]) => a - b)));
  return out;
}
