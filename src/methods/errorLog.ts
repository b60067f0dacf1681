/**
 * errorLog: central's error log. Every node sends its errors here; central
 * appends one line per error to <subscribersDataFolder>/errorLog/<node>/errorLog.log
 * in the seeds' form: "<time>, error: toNode: …, fromNode: …, method: …: <reason>".
 */
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { MethodError } from "../errors.js";
import type { ErrorReport } from "../message/message.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { decodeData } from "./output.js";
import { ensureDir } from "./paths.js";

export async function errorLog(ctx: MethodContext): Promise<MethodOutput> {
  const dir = join(ctx.dataFolder, "errorLog", ctx.message.fromNode);
  const line = decodeData(ctx).replace(/\n+$/, "");
  try {
    await ensureDir(dir);
    await appendFile(join(dir, "errorLog.log"), `${line}\n`);
  } catch (err) {
    throw new MethodError("errorLog", `cannot write the error log in ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { exitCode: 0 };
}

/** One error line, the seeds' way. */
export function errorLine(e: ErrorReport): string {
  // "Tue Sep 21 09:17:55 2021", local time, as in the seeds.
  const [wd, mon, day, year, time] = new Date().toString().split(" ");
  const when = `${wd} ${mon} ${day} ${time} ${year}`;
  return `${when}, error: toNode: ${e.toNode}, fromNode: ${e.fromNode}, method: ${e.method}${e.id ? `, id: ${e.id}` : ""}: ${e.reason}`;
}
