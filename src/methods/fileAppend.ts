/** fileAppend: append the data to directory/fileName (see paths.ts for where). */
import { appendFile } from "node:fs/promises";
import { dirname } from "node:path";
import { MethodError } from "../errors.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { resultText } from "./output.js";
import { ensureDir, resultPath } from "./paths.js";

export async function fileAppend(ctx: MethodContext): Promise<MethodOutput> {
  const path = resultPath(ctx);
  try {
    await ensureDir(dirname(path));
    await appendFile(path, resultText(ctx));
  } catch (err) {
    throw new MethodError("fileAppend", `cannot append to ${path}: ${(err as Error).message}`, { cause: err });
  }
  return { exitCode: 0, data: path };
}
