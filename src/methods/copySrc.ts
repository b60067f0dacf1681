/**
 * copySrc: copy a file from this node to another (ctrl's methodArgs: [srcPath, dstNode, dstPath, chunkSize,
 * maxTime, mode]). The file goes in chunks, each a copyDst message of its own (copyDst.ts), so each is stored,
 * signed, ACKed, retried and deduplicated like any message; a window of them is in flight at once.
 *
 *   status   ask the destination which chunks it holds already (a copy cut short by a restart of either end)
 *   chunks   read the file in order (its whole sha256 on the way), send each chunk it lacks, WINDOW at a time;
 *            a part of the result tells the origin how far the copy is, about once a second
 *   finish   the whole sha256 and the mode: the destination checks, renames into place, answers with the path
 *
 * A chunk's message id is made from the copy's id, its chunk size and its index: after a restart here the run
 * sends again only what the destination lacks, and what was stored for sending before the restart is the
 * same message (the outbox goes on delivering it), never a second one.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { MethodError } from "../errors.js";
import { newEnvelope } from "../message/envelope.js";
import { newId } from "../message/id.js";
import type { Envelope } from "../message/message.js";
import { now } from "../security/clock.js";
import { type CopyStep, copyRequest, fromRanges } from "./copyArgs.js";
import type { MessageSender, MethodContext, MethodOutput } from "./method.js";

/** Bytes per chunk when the operator names none. */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** Chunks in flight at once: enough to keep the link and both stores busy, not so many that a retry storms. */
export const WINDOW = 16;
/** Room in a message for everything but the chunk: the envelope, the grant, the signature. */
const ENVELOPE_ROOM = 16 * 1024;
const PROGRESS_MS = 1000;

export async function copySrc(ctx: MethodContext): Promise<MethodOutput> {
  const copy = copyRequest(ctx.message);
  const { frame, messages } = ctx;
  if (!frame || !messages)
    throw new MethodError("copySrc", "no grant to hand on: copySrc runs only as a request that arrived signed");
  const grant = Buffer.from(frame).toString("base64");
  const path = isAbsolute(copy.srcPath) ? copy.srcPath : resolve(ctx.dataFolder, copy.srcPath);
  // The chunk and its envelope must fit in one message of the broker's (maxOutput is at most max_payload).
  const most = Math.floor(((ctx.maxOutput - ENVELOPE_ROOM - grant.length) * 3) / 4 / 4096) * 4096;
  const chunkSize = Math.max(4096, Math.min(copy.chunkSize || DEFAULT_CHUNK_SIZE, most));
  const signal =
    copy.maxTime > 0 ? AbortSignal.any([ctx.signal, AbortSignal.timeout(copy.maxTime * 1000)]) : ctx.signal;
  // Its chunks wait for an absent destination until the copy's time is up, never failing for spent retries.
  const seconds = copy.maxTime || (ctx.message.methodTimeout > 0 ? ctx.message.methodTimeout : 7 * 24 * 3600);
  const deliverBy = now() + seconds * 1000;

  let fh;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw new MethodError("copySrc", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new MethodError("copySrc", `${path} is not a file`);
    const size = st.size;
    const mode = copy.mode || (st.mode & 0o7777).toString(8).padStart(4, "0");
    const count = Math.ceil(size / chunkSize);
    const send = (step: CopyStep, args: string[], id = newId(), data?: string): Envelope =>
      newEnvelope({
        id,
        toNode: copy.dstNode,
        fromNode: ctx.nodeName,
        method: "copyDst",
        methodArgs: [step, grant, String(size), String(chunkSize), ...args],
        methodTimeout: 120,
        ACKTimeout: 10,
        retries: 10,
        retryWait: 1,
        replyACKTimeout: 10,
        replyRetries: 10,
        deliverBy,
        deliverByGiven: true,
        ...(data !== undefined && { data, dataEncoding: "base64" as const }),
      });

    const held = fromRanges(await ask(messages, send("status", []), signal));
    const tag = createHash("sha256").update(copy.id).digest("hex").slice(0, 16);
    const whole = createHash("sha256");
    const buf = Buffer.alloc(chunkSize);
    const inFlight = new Set<Promise<void>>();
    let failure: Error | undefined;
    let copied = [...held].filter((i) => i < count).reduce((n, i) => n + Math.min(chunkSize, size - i * chunkSize), 0);
    let sent = 0;
    let told = Date.now();
    // At once, how much the destination holds already (a resumed copy), then about once a second.
    ctx.emit?.(`copying ${path} to ${copy.dstNode}:${copy.dstPath}: ${progress(copied, size)}\n`);
    for (let index = 0; index < count && failure === undefined; index++) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(chunkSize, size - index * chunkSize), index * chunkSize);
      const bytes = buf.subarray(0, bytesRead);
      whole.update(bytes);
      if (held.has(index)) continue;
      while (inFlight.size >= WINDOW && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined) break;
      const chunk = send(
        "chunk",
        [String(index), sha256(bytes)],
        `copy.${tag}.${chunkSize}.${index}`,
        bytes.toString("base64"),
      );
      sent++;
      const task: Promise<void> = ask(messages, chunk, signal).then(
        () => {
          copied += bytesRead;
          if (Date.now() - told >= PROGRESS_MS) {
            told = Date.now();
            ctx.emit?.(`copying ${path} to ${copy.dstNode}:${copy.dstPath}: ${progress(copied, size)}\n`);
          }
        },
        (err: unknown) => {
          failure ??= err instanceof Error ? err : new Error(String(err));
        },
      );
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    ctx.log.info("copy: chunks sent", { id: copy.id, chunks: count, sent, held: count - sent });
    const sum = whole.digest("hex");
    const written = await ask(messages, send("finish", [sum, mode]), signal);
    return { exitCode: 0, data: `copied ${path} to ${copy.dstNode}:${written}: ${size} bytes, sha256 ${sum}\n` };
  } finally {
    await fh.close();
  }
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

function progress(copied: number, size: number): string {
  const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
  return `${mib(copied)} of ${mib(size)} MiB (${size === 0 ? 100 : Math.floor((copied / size) * 100)}%)`;
}

/** Send one copyDst and wait for its reply: its data, or the reason it failed. */
async function ask(messages: MessageSender, message: Envelope, signal: AbortSignal): Promise<string> {
  await messages.send(message);
  const out = await messages.outcome(message.id, signal);
  if (out.state !== "done" || out.result?.error) {
    const step = message.methodArgs[0] === "chunk" ? `chunk ${message.methodArgs[4]}` : message.methodArgs[0];
    throw new MethodError("copySrc", `${step} to ${message.toNode}: ${out.result?.error ?? out.reason ?? out.state}`);
  }
  return out.result?.data ?? "";
}
