/**
 * Ending what a crash left running. A run that starts a process group has its
 * id and start time stored (IncomingTable.recordProcessGroup); a node that
 * crashed mid-run finds the message still running at its next start, and ends
 * that group before running the message again, so that two copies never run.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "../log.js";
import type { IncomingRecord } from "../store/store.js";

/** End the process group a crashed run of `record` left behind, if it is still ours. */
export function endLeftoverProcessGroup(record: IncomingRecord, log: Logger): void {
  if (record.state !== "running" || record.pgid === null) return;
  // If the leader is gone its pid cannot have become another group's id while our orphans hold the group;
  // if it is alive, its start time tells ours from a process that reused the pid.
  const leaderStart = processStartTime(record.pgid);
  if (leaderStart !== null && leaderStart !== record.pstart) return;
  try {
    process.kill(-record.pgid, "SIGKILL");
    log.info("ended a process group left running by a crash", { id: record.id, pgid: record.pgid });
  } catch {
    // Gone meanwhile.
  }
}

/**
 * When a process started (field 22 of /proc/<pid>/stat), so that a pid the
 * system has since reused is never taken for ours. Null where /proc is missing.
 */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}
