/**
 * Where file and fileAppend write:
 *   <subscribersDataFolder>/<directory>/<node that produced the data>/<fileName>
 * An absolute directory (the operator's own request) is used as given, still
 * with the producing node's subfolder. For a reply the path comes from the
 * request this node stored, never from the wire; a request from another
 * node writes only inside the data folder. The rules for fileName and
 * directory are those a message is checked against when it is accepted
 * (src/message/parse.ts), checked again here for what came from the wire.
 */
import { mkdir, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { MethodError } from "../errors.js";
import { directoryProblem, fileNameProblem } from "../message/names.js";
import type { MethodContext } from "./method.js";

export function resultPath(ctx: MethodContext): string {
  const { message, request } = ctx;
  // A reply's data goes where this node's own stored request said; a request's where its sender said.
  const from = request ?? message;
  const fileName = from.fileName ?? `${from.method}.result`;
  const dir = from.directory ?? "";
  const badName = fileNameProblem(fileName);
  if (badName) throw new MethodError(message.method, `fileName "${fileName}" ${badName}`);
  const badDir = directoryProblem(dir);
  if (badDir) throw new MethodError(message.method, `directory "${dir}" ${badDir}`);
  const rel = join(dir, message.fromNode, fileName);
  // Only the operator's own request names an absolute directory: the argument check of file and
  // fileAppend (src/message/methods.ts) keeps a request's directory relative.
  if (request && isAbsolute(dir)) return rel;
  const full = resolve(ctx.dataFolder, rel);
  if (!inside(ctx.dataFolder, full)) throw new MethodError(message.method, `path "${rel}" leaves the data folder`);
  return full;
}

/** Whether `path` is `root` or lies below it (both resolved against the working folder). */
export function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * mkdir -p that gives up. Node's recursive mkdir retries forever when a
 * parent exists but refuses children (as /proc does, answering ENOENT), which
 * would spin a method at 100% CPU; this one makes one level at a time.
 */
export async function ensureDir(dir: string): Promise<void> {
  const full = resolve(dir);
  const missing: string[] = [];
  for (let d = full; ; d = dirname(d)) {
    try {
      if ((await stat(d)).isDirectory()) break;
      throw new Error(`${d} exists and is not a folder`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      missing.unshift(d);
      if (dirname(d) === d) break;
    }
  }
  for (const d of missing) {
    try {
      await mkdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}
