/**
 * Where file and fileAppend write (DESIGN §5):
 *   <subscribersDataFolder>/<directory>/<node that produced the data>/<fileName>
 * An absolute directory (the operator's own request) is used as given, still
 * with the producing node's subfolder. For a reply the path comes from the
 * request this node stored, never from the wire; a request from another
 * node writes only inside the data folder.
 */
import { mkdir, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { MethodError } from "../errors.js";
import type { MethodContext } from "./method.js";

export function resultPath(ctx: MethodContext): string {
  const { message, request } = ctx;
  if (request) {
    const fileName = request.fileName ?? `${request.method}.result`;
    const dir = request.directory ?? "";
    checkPlain(fileName, "fileName", message.method);
    if (dir.split(/[\\/]/).includes("..")) throw new MethodError(message.method, `directory "${dir}" contains ".."`);
    if (isAbsolute(dir)) return join(dir, message.fromNode, fileName);
    return inside(ctx.dataFolder, join(dir, message.fromNode, fileName), message.method);
  }
  const fileName = message.fileName ?? `${message.method}.result`;
  const dir = message.directory ?? "";
  checkPlain(fileName, "fileName", message.method);
  if (isAbsolute(dir) || dir.split(/[\\/]/).includes("..")) {
    throw new MethodError(
      message.method,
      `directory "${dir}" from ${message.fromNode} would write outside the data folder; use a relative directory`,
    );
  }
  return inside(ctx.dataFolder, join(dir, message.fromNode, fileName), message.method);
}

function checkPlain(fileName: string, field: string, method: string): void {
  if (fileName === "" || fileName === "." || fileName === ".." || /[\\/]/.test(fileName)) {
    throw new MethodError(method, `${field} "${fileName}" must be a plain file name`);
  }
}

function inside(root: string, rel: string, method: string): string {
  const full = resolve(root, rel);
  const back = relative(resolve(root), full);
  if (back.startsWith("..") || isAbsolute(back)) throw new MethodError(method, `path "${rel}" leaves the data folder`);
  return full;
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
