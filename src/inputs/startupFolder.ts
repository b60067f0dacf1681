/**
 * The startup folder: every file in it (JSON or YAML messages) is handed in
 * at each start of the node, for services a node should always run. Files
 * stay where they are. A message with its own `id` runs once ever (ids are
 * idempotent); leave `id` out for a run at every start.
 */
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { type Acceptor, answerLine } from "./protocol.js";

export async function runStartupFolder(folder: string, acceptor: Acceptor, log: Logger): Promise<number> {
  mkdirSync(folder, { recursive: true });
  let accepted = 0;
  for (const name of readdirSync(folder).sort()) {
    if (name.startsWith(".")) continue;
    const path = join(folder, name);
    try {
      if (!statSync(path).isFile()) continue;
      const answers = await acceptor.accept(readFileSync(path, "utf8"), `startupFolder:${name}`);
      accepted += answers.filter((a) => a.ok).length;
      for (const a of answers)
        if (!a.ok) log.warn("startup folder: message refused", { file: path, answer: answerLine(a) });
    } catch (err) {
      log.warn("startup folder: cannot read a file", { file: path, reason: (err as Error).message });
    }
  }
  return accepted;
}
