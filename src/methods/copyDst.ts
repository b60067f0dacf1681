/**
 * copyDst: the destination's side of a copy (copySrc.ts sends it). Chunks are written at their offsets into a
 * temporary file beside the destination path, and each written chunk is noted in a small file beside it, so a
 * restart of either end goes on from the chunks already here:
 *
 *   .<name>.<copy>.part          the file being written (0600 until it is renamed into place with its mode)
 *   .<name>.<copy>.part.chunks   "steward-copy <size> <chunkSize>", then "<index> <sha256>" per chunk written
 *
 * Two steps are messages, each carrying the copy's grant:
 *
 *   status  the chunks held, each checked again against its sha256 (a power cut may have lost a write); the
 *           copy is opened here: from now on its source's chunks (src/delivery/copyChunks.ts) are taken
 *   finish  every chunk held and adding up to the source's (chunksDigest in copyArgs.ts), the file synced, the
 *           mode set, renamed into place; the answer is its path
 *
 * A chunk is written when it arrives, synchronously: a write of 256 KiB into the page cache takes a fraction of a
 * millisecond, and each chunk then lands whole between the steps' own reads and writes. It is not synced one by
 * one: a SIGKILL does not lose what the kernel has, and what a power cut loses the next status finds missing.
 *
 * Where: the grant's dstPath (src/methods/copyArgs.ts), never the chunk's: relative inside the data folder, an
 * absolute one only from an operator src/delivery/copyGrant.ts lets write there. Steps of one copy run one at a
 * time; different copies do not wait for each other.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { appendFile, chmod, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { MethodError } from "../errors.js";
import { chunksDigest, type CopyRequest, copyRequest, copyTag, ranges, readGrant } from "./copyArgs.js";
import type { CopyAnswer, CopyChunk, MethodContext, MethodOutput } from "./method.js";
import { ensureDir, inside } from "./paths.js";

interface CopyState {
  size: number;
  chunkSize: number;
  /** Chunk index → its sha256, for the chunks written. */
  have: Map<number, string>;
  /** Stops taking this copy's chunks (the status step started taking them). */
  release?: () => void;
  /**
   * Every chunk in `have` was checked against its sha256 by this process: written by it, or read back. False
   * for chunks only listed in a chunks file found at start (a power cut may have lost their bytes).
   */
  checked: boolean;
  /** The part and chunks files, open while chunks come (closed when none came for FILES_IDLE_MS). */
  files?: { part: number; chunks: number; idle: NodeJS.Timeout };
  /** Bytes written since the last sync was started, and that sync while it runs (syncSoon). */
  unsynced: number;
  syncing?: Promise<void>;
}

/** A copy whose chunks stopped coming for this long has its files closed (reopened by the next chunk). */
const FILES_IDLE_MS = 5000;
/** Written bytes that start a sync in the background: the finish's own sync then finds little left to write. */
const SYNC_EVERY = 32 * 1024 * 1024;

/** The state of each copy being written here, by its part file, loaded from its chunks file on first use. */
const states = new Map<string, CopyState>();
/** The step of each copy that runs now: the next one waits for it. */
const turns = new Map<string, Promise<unknown>>();

export async function copyDst(ctx: MethodContext): Promise<MethodOutput> {
  const [step = "", grantText = "", sizeText = "", chunkSizeText = "", a = "", b = ""] = ctx.message.methodArgs;
  const grant = readGrant(grantText);
  if (!grant) throw new MethodError("copyDst", "no grant: copyDst is sent by copySrc");
  const copy = copyRequest(grant.request);
  const size = Number(sizeText);
  const chunkSize = Number(chunkSizeText);
  if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(chunkSize) || chunkSize <= 0)
    throw new MethodError("copyDst", `bad size ${sizeText} or chunk size ${chunkSizeText}`);
  const target = targetPath(ctx, copy);
  const tag = copyTag(copy.id);
  const part = join(dirname(target), `.${basename(target)}.${tag}.part`);
  const job = async (): Promise<MethodOutput> => {
    if (step === "status") return status(ctx, tag, part, size, chunkSize);
    if (step === "finish") return finish(part, target, size, chunkSize, a, copy.mode || b);
    throw new MethodError("copyDst", `unknown step "${step}"`);
  };
  // One step of a copy at a time: the chunks file and its state are never written by two at once.
  const turn = (turns.get(part) ?? Promise.resolve()).then(job, job);
  turns.set(part, turn);
  try {
    return await turn;
  } catch (err) {
    if (err instanceof MethodError) throw err;
    throw new MethodError("copyDst", `${step} of ${target}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (turns.get(part) === turn) turns.delete(part);
  }
}

/** Where the copy goes: an absolute dstPath as given (the grant was checked), a relative one in the data folder. */
function targetPath(ctx: MethodContext, copy: CopyRequest): string {
  if (isAbsolute(copy.dstPath)) return copy.dstPath;
  const full = resolve(ctx.dataFolder, copy.dstPath);
  if (!inside(ctx.dataFolder, full) || full === resolve(ctx.dataFolder))
    throw new MethodError("copyDst", `dstPath "${copy.dstPath}" leaves the data folder`);
  return full;
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/** The copy's state, from memory or its chunks file; a file for another size or chunk size starts over. */
async function load(part: string, size: number, chunkSize: number): Promise<CopyState> {
  const known = states.get(part);
  if (known && known.size === size && known.chunkSize === chunkSize) return known;
  if (known) letGo(known);
  const state: CopyState = { size, chunkSize, have: new Map(), checked: true, unsynced: 0 };
  let text = "";
  try {
    text = await readFile(`${part}.chunks`, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const [head, ...lines] = text.split("\n");
  if (head === `steward-copy ${size} ${chunkSize}`) {
    // The last line may be cut by a crash: only whole lines count.
    for (const line of lines) {
      const m = /^(\d+) ([0-9a-f]{64})$/.exec(line);
      if (m) state.have.set(Number(m[1]), m[2] as string);
    }
    state.checked = state.have.size === 0;
  } else {
    await ensureDir(dirname(part));
    await writeFile(part, "", { mode: 0o600 });
    await appendFile(`${part}.chunks`, `steward-copy ${size} ${chunkSize}\n`, { flag: "w" });
  }
  states.set(part, state);
  return state;
}

/** The chunks held, each read back and checked against its sha256; one that fails is dropped, to be sent again. */
async function checked(part: string, size: number, chunkSize: number): Promise<Map<number, string>> {
  const state = await load(part, size, chunkSize);
  await readBack(part, state);
  return state.have;
}

/** Read the chunks held back from the part file, dropping any that no longer matches its sha256. */
async function readBack(part: string, state: CopyState): Promise<void> {
  state.checked = true;
  if (state.have.size === 0) return;
  let fh;
  try {
    fh = await open(part, "r");
  } catch {
    state.have.clear();
    return;
  }
  try {
    const buf = Buffer.alloc(state.chunkSize);
    for (const index of [...state.have.keys()].sort((x, y) => x - y)) {
      const length = chunkLength(state.size, state.chunkSize, index);
      const { bytesRead } = await fh.read(buf, 0, length, index * state.chunkSize);
      const bytes = buf.subarray(0, length);
      if (bytesRead !== length || sha256(bytes) !== state.have.get(index)) state.have.delete(index);
    }
  } finally {
    await fh.close();
  }
}

function chunkLength(size: number, chunkSize: number, index: number): number {
  return Math.max(0, Math.min(chunkSize, size - index * chunkSize));
}

/** The chunks held, checked; from now on the copy's chunks from this message's sender are taken here. */
async function status(
  ctx: MethodContext,
  tag: string,
  part: string,
  size: number,
  chunkSize: number,
): Promise<MethodOutput> {
  const { copies } = ctx;
  if (!copies) throw new MethodError("copyDst", "this node takes no copy chunks");
  const have = await checked(part, size, chunkSize);
  // A part file a crash left without (its chunks file written first): chunks are written into it in place.
  await appendFile(part, "", { mode: 0o600 });
  const state = await load(part, size, chunkSize);
  state.release?.();
  state.release = copies.take(tag, ctx.message.fromNode, (chunk) => writeChunk(part, state, chunk));
  return { exitCode: 0, data: ranges([...have.keys()]) };
}

/** Write one chunk where it belongs and note it; synchronous, so that it lands whole between the steps' awaits. */
function writeChunk(part: string, state: CopyState, chunk: CopyChunk): CopyAnswer | { drop: string } {
  const { index, sha256: sum, data } = chunk;
  const length = chunkLength(state.size, state.chunkSize, index);
  if (length === 0 || data.length !== length) return { drop: `${data.length} bytes where ${length} belong` };
  if (states.get(part) !== state) return { unknown: "the copy was finished or started over" };
  if (state.have.get(index) === sum) return { written: index };
  const files = filesOf(part, state);
  writeSync(files.part, data, 0, length, index * state.chunkSize);
  writeSync(files.chunks, `${index} ${sum}\n`);
  state.have.set(index, sum);
  state.unsynced += length;
  if (state.unsynced >= SYNC_EVERY && !state.syncing) syncSoon(part, state);
  return { written: index };
}

/** The copy's files, opened for its first chunk and kept open while chunks come. */
function filesOf(part: string, state: CopyState): NonNullable<CopyState["files"]> {
  if (state.files) {
    state.files.idle.refresh();
    return state.files;
  }
  const fd = openSync(part, "r+");
  let chunks;
  try {
    chunks = openSync(`${part}.chunks`, "a");
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const idle = setTimeout(() => closeFiles(state), FILES_IDLE_MS).unref();
  state.files = { part: fd, chunks, idle };
  return state.files;
}

/** Take no more chunks of this copy here, and close its files. */
function letGo(state: CopyState): void {
  state.release?.();
  state.release = undefined;
  closeFiles(state);
}

function closeFiles(state: CopyState): void {
  const files = state.files;
  if (!files) return;
  state.files = undefined;
  clearTimeout(files.idle);
  closeSync(files.part);
  closeSync(files.chunks);
}

/** Start writing the part file out to disk in the background, while the copy goes on. */
function syncSoon(part: string, state: CopyState): void {
  state.unsynced = 0;
  state.syncing = (async () => {
    const fh = await open(part, "r+");
    try {
      await fh.datasync();
    } finally {
      await fh.close();
    }
  })()
    // Only to be ahead: the finish syncs again, and says what fails then.
    .catch(() => undefined)
    .finally(() => (state.syncing = undefined));
}

async function finish(
  part: string,
  target: string,
  size: number,
  chunkSize: number,
  digest: string,
  mode: string,
): Promise<MethodOutput> {
  const state = await load(part, size, chunkSize);
  // No chunk is written into the part file once it is checked.
  letGo(state);
  const count = Math.ceil(size / chunkSize);
  // Chunks only listed in a chunks file found at start: read back, lest a power cut lost their bytes.
  if (!state.checked) await readBack(part, state);
  const sums = Array.from({ length: count }, (_, i) => state.have.get(i));
  const missing = sums.filter((sum) => sum === undefined).length;
  if (missing > 0) throw new MethodError("copyDst", `${target}: ${missing} of ${count} chunks have not arrived`);
  if (chunksDigest(sums as string[]) !== digest) {
    await forget(part);
    throw new MethodError(
      "copyDst",
      `${target}: the chunks here are not those of the source file (it changed during the copy?); send the copy again`,
    );
  }
  if (count === 0) await appendFile(part, "", { mode: 0o600 });
  // On disk before it gets its name: a power cut after the rename must not leave a file with holes.
  await state.syncing;
  const fh = await open(part, "r+");
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await chmod(part, parseInt(mode || "0644", 8));
  await rename(part, target);
  await forget(part);
  return { exitCode: 0, data: target };
}

async function forget(part: string): Promise<void> {
  const state = states.get(part);
  if (state) letGo(state);
  states.delete(part);
  await rm(part, { force: true });
  await rm(`${part}.chunks`, { force: true });
}
