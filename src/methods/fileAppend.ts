/** fileAppend: append the data to directory/fileName (see paths.ts for where). */
import { appendFile } from "node:fs/promises";
import { dirname } from "node:path";
import { MethodError } from "../errors.js";
import { decodeData } from "./console.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { ensureDir, resultPath } from "./paths.js";

export async function fileAppend(ctx: MethodContext): Promise<MethodOutput> {
  const path = resultPath(ctx);
  try {
    await ensureDir(dirname(path));
    await appendFile(path, resultText(ctx));
  } catch (err) {
    throw new MethodError("fileAppend", `cannot append to ${path}: ${(err as Error).message}`, err);
  }
  return { exitCode: 0, data: path };
}

/** The text to write: the data, plus a line saying so when the method failed or ran twice. */
export function resultText(ctx: MethodContext): string {
  let text = decodeData(ctx);
  if (text !== "" && !text.endsWith("\n")) text += "\n";
  const r = ctx.message.result;
  if (r?.partial) return text; // Notes go with the last part only.
  if (r?.error) text += `[steward] ${ctx.message.requestId} failed on ${ctx.message.fromNode}: ${r.error}\n`;
  if (r?.truncated) text += `[steward] output cut: ${r.truncated} bytes dropped\n`;
  if (r?.rerun)
    text += `[steward] ${ctx.message.requestId} was run again after ${ctx.message.fromNode} restarted mid-run\n`;
  return text;
}
