/**
 * Small helpers for the method and seed tests: unique markers, files that
 * appear, and whether a process is still alive. No fixed sleeps: everything
 * that waits goes through `sleepUntil`.
 */

import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { sleepUntil } from "../../src/harness/fleet.js";

/** A string no other test (or earlier run) produces. */
export function marker(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

export function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, "utf8") : undefined;
}

/** Wait until the file exists and `ok(content)` holds; returns the content. */
export async function waitFile(
  path: string,
  ok: (text: string) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<string> {
  let last: string | undefined;
  await sleepUntil(
    () => {
      last = readIfExists(path);
      return last !== undefined && ok(last);
    },
    { timeoutMs, what: () => `file ${path} (last content: ${JSON.stringify(last)})` },
  );
  return last as string;
}

/** A process that exists and is not a zombie (a zombie is dead, only not yet reaped). */
export function isAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // "<pid> (<comm>) <state> …": the comm may hold spaces and parentheses, the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}
