/** file: write (replace) the data to directory/fileName (see paths.ts for where). */
import { rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { MethodError } from "../errors.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { resultText } from "./output.js";
import { ensureDir, resultPath } from "./paths.js";

export async function file(ctx: MethodContext): Promise<MethodOutput> {
  const path = resultPath(ctx);
  try {
    await ensureDir(dirname(path));
    // Write beside and rename: a reader never sees half a file.
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, resultText(ctx));
    await rename(tmp, path);
  } catch (err) {
    throw new MethodError("file", `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  return { exitCode: 0, data: path };
}
