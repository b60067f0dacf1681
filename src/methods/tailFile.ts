/**
 * tailFile: follow a file on the receiving node and send new lines back, in
 * batches, until methodTimeout. It starts at the end of the file (like
 * `tail -f`), and keeps following when the file is truncated (starts over
 * from its beginning) or rotated (a new file under the same name).
 */
import { open, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { MethodError } from "../errors.js";
import { abortableSleep } from "../timers.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { StreamBatcher } from "./stream.js";

const POLL_MS = 250;
const READ_CHUNK = 64 * 1024;

export async function tailFile(ctx: MethodContext): Promise<MethodOutput> {
  // The method's argument check (src/message/methods.ts) has made sure there is a path.
  const arg = ctx.message.methodArgs[0] ?? "";
  const path = isAbsolute(arg) ? arg : resolve(ctx.dataFolder, arg);
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new MethodError("tailFile", `cannot follow ${path}: ${(err as Error).message}`, { cause: err });
  }
  let ino = st.ino;
  let pos = st.size;
  let partialLine = "";
  const batcher = new StreamBatcher(ctx);
  try {
    await follow();
  } finally {
    // Whatever ended the tail, no batch is sent after the last reply.
    partialLine = batcher.rest() + partialLine;
  }
  return { data: partialLine, exitCode: 0 };

  async function follow(): Promise<void> {
    while (!ctx.signal.aborted) {
      await abortableSleep(POLL_MS, ctx.signal);
      let now;
      try {
        now = await stat(path);
      } catch {
        continue; // Between rotation steps the name may be missing for a moment.
      }
      if (now.ino !== ino) {
        // Rotated: finish nothing more from the old file, read the new one from its start.
        ino = now.ino;
        pos = 0;
      } else if (now.size < pos) {
        pos = 0; // Truncated.
      }
      if (now.size <= pos) continue;
      let fh;
      try {
        fh = await open(path, "r");
      } catch {
        continue; // Rotated between stat and open: the next poll finds the new file.
      }
      try {
        const buf = Buffer.alloc(READ_CHUNK);
        while (pos < now.size && !ctx.signal.aborted) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(READ_CHUNK, now.size - pos), pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          const text = partialLine + buf.subarray(0, bytesRead).toString("utf8");
          const cut = text.lastIndexOf("\n") + 1;
          partialLine = text.slice(cut);
          if (cut > 0) batcher.push(text.slice(0, cut));
        }
      } finally {
        await fh.close();
      }
    }
  }
}
