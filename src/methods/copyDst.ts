/**
 * copyDst: the destination's side of a copy (copySrc.ts sends it). Chunks are written at their offsets into a
 * temporary file beside the destination path, and each written chunk is noted in a small file beside it, so a
 * restart of either end goes on from the chunks already here:
 *
 *   .<name>.<copy>.part          the file being written (0600 until it is renamed into place with its mode)
 *   .<name>.<copy>.part.chunks   "steward-copy <size> <chunkSize>", then "<index> <sha256>" per chunk written
 *
 * The steps are messages, each carrying the copy's grant:
 *
 *   status   the chunks held, each checked again against its sha256 (a power cut may have lost a write); the
 *            copy is opened here: from now on its source's chunks (src/delivery/copyChunks.ts) are taken
 *   finish   every chunk held and adding up to the source's (chunksDigest in copyArgs.ts), the file synced, the
 *            mode set, renamed into place; the answer is its path, or "missing <ranges>" for chunks the source
 *            must send again; the file in place already (a finish run again): its path. A finish that fails
 *            deletes the copy's files: the source gives up, and a copy sent again is a new one.
 *   abandon  the source gave the copy up (cancelled, out of time, failed there): its files are deleted
 *
 * A chunk is written when it arrives, synchronously: a write of half a MiB into the page cache takes a fraction of
 * a millisecond, and each chunk then lands whole between the steps' own reads and writes. It is not synced one by
 * one: a SIGKILL does not lose what the kernel has; what a power cut loses, the chunks read back after the restart
 * (status, finish) find missing. A copy nothing came for in OPEN_IDLE_MS is let go: its files stay, for a status
 * to open it again (a source back after a long absence); a source that gives the copy up says so (abandon).
 *
 * The temporary files sit beside the destination, in a folder that may not be this node's alone (an absolute
 * dstPath): they are made anew (O_EXCL) and opened without following a link (O_NOFOLLOW), and one this node did
 * not make is not written to, so that a link or file planted under their names cannot turn a write, a truncate
 * or a chmod onto another file.
 *
 * Where: the grant's dstPath (src/methods/copyArgs.ts), never the chunk's: relative inside the data folder, an
 * absolute one only from an operator src/delivery/copyGrant.ts lets write there. Steps of one copy run one at a
 * time; different copies do not wait for each other.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, existsSync, fstatSync, openSync, writeSync, type Stats } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { MethodError } from "../errors.js";
import {
  chunkCount,
  chunksDigest,
  copyRequest,
  copyTag,
  MAX_CHUNKS,
  MIN_CHUNK,
  ranges,
  readGrant,
  type CopyRequest,
} from "./copyArgs.js";
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
  /** Why a background sync failed: the kernel may have dropped those pages, and says so only once. */
  syncFailed?: string;
  /** Lets the copy go when neither a step nor a chunk came for OPEN_IDLE_MS. */
  expiry?: NodeJS.Timeout;
}

/** A copy whose chunks stopped coming for this long has its files closed (reopened by the next chunk). */
const FILES_IDLE_MS = 5000;
/** A copy nothing came for for this long is no longer taken here (its source gave up, or went for good). */
const OPEN_IDLE_MS = 60 * 60 * 1000;
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
  // A chunk fits one message of the broker's: a larger chunk size would only make this node read that much at once.
  // And a copy has at most MAX_CHUNKS: a source cannot make it hold a list of billions of chunks.
  const most = ctx.copies?.maxChunk ?? 0;
  if (
    !Number.isSafeInteger(size) ||
    size < 0 ||
    !Number.isSafeInteger(chunkSize) ||
    chunkSize < MIN_CHUNK ||
    chunkSize > most ||
    chunkCount(size, chunkSize) > MAX_CHUNKS
  )
    throw new MethodError(
      "copyDst",
      `bad size ${sizeText} or chunk size ${chunkSizeText} (${MIN_CHUNK} to ${most} bytes, at most ${MAX_CHUNKS} chunks)`,
    );
  const target = targetPath(ctx, copy);
  const tag = copyTag(copy.id);
  const part = join(dirname(target), `.${basename(target)}.${tag}.part`);
  const job = async (): Promise<MethodOutput> => {
    if (step === "status") return status(ctx, tag, part, size, chunkSize);
    if (step === "finish") return finish(part, target, size, chunkSize, a, modeOf(copy.mode, b));
    if (step === "abandon") {
      await forget(part);
      return { exitCode: 0, data: `${target}: the copy's files are deleted` };
    }
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

/**
 * The mode to set: the operator's (in the grant, checked at input), else the source file's as its source says,
 * without setuid, setgid or sticky bits: those a source could otherwise set on a file of this node's.
 */
function modeOf(granted: string, fromSource: string): number {
  if (granted) return parseInt(granted, 8);
  return /^0?[0-7]{3,4}$/.test(fromSource) ? parseInt(fromSource, 8) & 0o777 : 0o644;
}

/** The copy's state, from memory or its chunks file; a file for another size or chunk size starts over. */
async function load(part: string, size: number, chunkSize: number): Promise<CopyState> {
  const known = states.get(part);
  if (known && known.size === size && known.chunkSize === chunkSize) return known;
  if (known) letGo(known);
  const state: CopyState = { size, chunkSize, have: new Map(), checked: true, unsynced: 0 };
  let text = "";
  try {
    const fh = await open(`${part}.chunks`, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = await fh.readFile("utf8");
    } finally {
      await fh.close();
    }
  } catch (err) {
    // Not there (a new copy), or a link: either way the copy starts over in files of its own.
    if (!["ENOENT", "ELOOP"].includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
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
    // Whatever had these names goes (unlink removes a link, never what it points to); the files are made anew.
    await rm(part, { force: true });
    await rm(`${part}.chunks`, { force: true });
    await createNew(part, "");
    await createNew(`${part}.chunks`, `steward-copy ${size} ${chunkSize}\n`);
  }
  states.set(part, state);
  return state;
}

/**
 * The chunks held; those only listed in a chunks file found at start are read back and checked against their
 * sha256 first, and one that fails is dropped, to be sent again.
 */
async function checked(part: string, size: number, chunkSize: number): Promise<Map<number, string>> {
  const state = await load(part, size, chunkSize);
  if (!state.checked) await readBack(part, state);
  return state.have;
}

/** Read the chunks held back from the part file, dropping any that no longer matches its sha256. */
async function readBack(part: string, state: CopyState): Promise<void> {
  state.checked = true;
  if (state.have.size === 0) return;
  let fh;
  try {
    fh = await open(part, constants.O_RDONLY | constants.O_NOFOLLOW);
    ownFile(await fh.stat(), part);
  } catch {
    await fh?.close();
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
  const state = await load(part, size, chunkSize);
  // A part file gone (a finish renamed it, and the chunks file outlived a crash): chunks are written into it in place.
  if (!existsSync(part)) await createNew(part, "");
  state.release?.();
  state.release = copies.take(tag, ctx.message.fromNode, (chunk) => writeChunk(part, state, chunk));
  if (state.expiry) state.expiry.refresh();
  else
    state.expiry = setTimeout(() => {
      if (states.get(part) !== state) return;
      letGo(state);
      states.delete(part);
    }, OPEN_IDLE_MS).unref();
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
  writeAll(files.part, data, index * state.chunkSize);
  writeAll(files.chunks, Buffer.from(`${index} ${sum}\n`), null);
  state.have.set(index, sum);
  state.expiry?.refresh();
  state.unsynced += length;
  if (state.unsynced >= SYNC_EVERY && !state.syncing) syncSoon(part, state);
  return { written: index };
}

/** Write all of `bytes` (a write may take fewer: a full disk, a file size limit), or throw. */
function writeAll(fd: number, bytes: Uint8Array, position: number | null): void {
  for (let done = 0; done < bytes.length;) {
    const n = writeSync(fd, bytes, done, bytes.length - done, position === null ? null : position + done);
    if (n <= 0) throw new Error(`wrote ${done} of ${bytes.length} bytes`);
    done += n;
  }
}

/** The copy's files, opened for its first chunk and kept open while chunks come. */
function filesOf(part: string, state: CopyState): NonNullable<CopyState["files"]> {
  if (state.files) {
    state.files.idle.refresh();
    return state.files;
  }
  const fd = openSync(part, constants.O_RDWR | constants.O_NOFOLLOW);
  let chunks;
  try {
    ownFile(fstatSync(fd), part);
    chunks = openSync(`${part}.chunks`, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
    ownFile(fstatSync(chunks), `${part}.chunks`);
  } catch (err) {
    closeSync(fd);
    if (chunks !== undefined) closeSync(chunks);
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
  clearTimeout(state.expiry);
  state.expiry = undefined;
  closeFiles(state);
}

function closeFiles(state: CopyState): void {
  const files = state.files;
  if (!files) return;
  state.files = undefined;
  clearTimeout(files.idle);
  // Called from timers too, where a throw would end the node: a write error told only at close (NFS, a full
  // quota) is kept for the finish to fail with.
  for (const fd of [files.part, files.chunks]) {
    try {
      closeSync(fd);
    } catch (err) {
      state.syncFailed ??= (err as Error).message;
    }
  }
}

/** Start writing the part file out to disk in the background, while the copy goes on. */
function syncSoon(part: string, state: CopyState): void {
  state.unsynced = 0;
  state.syncing = (async () => {
    const fh = await open(part, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      await fh.datasync();
    } finally {
      await fh.close();
    }
  })()
    // The finish syncs again, but a failure is told only once: it remembers this one.
    .catch((err: unknown) => {
      state.syncFailed ??= (err as Error).message;
    })
    .finally(() => (state.syncing = undefined));
}

async function finish(
  part: string,
  target: string,
  size: number,
  chunkSize: number,
  digest: string,
  mode: number,
): Promise<MethodOutput> {
  const done = { exitCode: 0, data: target };
  // Run again after it renamed the file (a crash before its answer was stored): the same answer.
  if (!existsSync(part) && (await targetDigest(target, size, chunkSize)) === digest) {
    await forget(part);
    return done;
  }
  const state = await load(part, size, chunkSize);
  const count = chunkCount(size, chunkSize);
  // Chunks only listed in a chunks file found at start: read back, lest a power cut lost their bytes.
  if (!state.checked) await readBack(part, state);
  const sums = Array.from({ length: count }, (_, i) => state.have.get(i));
  const missing = sums.flatMap((sum, i) => (sum === undefined ? [i] : []));
  // The copy stays open: the source sends these, then the finish again.
  if (missing.length > 0) return { exitCode: 0, data: `missing ${ranges(missing)}` };
  // No chunk is written into the part file once it is checked.
  letGo(state);
  try {
    if (chunksDigest(sums as string[]) !== digest)
      throw new Error("the chunks here are not those of the source file (it changed during the copy?)");
    // On disk before it gets its name: a power cut after the rename must not leave a file with holes.
    await state.syncing;
    if (state.syncFailed) throw new Error(`writing it to disk failed (${state.syncFailed})`);
    const fh = await open(part, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      ownFile(await fh.stat(), part);
      // Through the file this node made and checked, not its name: exactly `size` bytes, then its mode.
      await fh.truncate(size);
      await fh.datasync();
      await fh.chmod(mode);
    } finally {
      await fh.close();
    }
    await rename(part, target);
    await syncFolder(dirname(target));
  } catch (err) {
    // The source gives the copy up on this answer: nothing is left behind for a resume that will not come.
    await forget(part);
    throw new MethodError("copyDst", `${target}: ${(err as Error).message}; send the copy again`, { cause: err });
  }
  await forget(part);
  return done;
}

/** Make `path` as a new file of this node's (0600), never through a link or a file already there. */
async function createNew(path: string, text: string): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
}

/**
 * Throw unless `st` is a file this node made: a plain file of its own user with one name. One planted by
 * another user, or a hard link to some other file, is not written through.
 */
function ownFile(st: Stats, path: string): void {
  if (!st.isFile() || st.uid !== process.getuid?.() || st.nlink !== 1)
    throw new Error(`${path} is not a file this node made (its owner, type or links changed): not written`);
}

/** The rename on disk too: a power cut right after the copy's "done" must not lose its name. */
async function syncFolder(folder: string): Promise<void> {
  const fh = await open(folder, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The chunks digest of the file at `path` as this copy would cut it; undefined when it is not that size. */
async function targetDigest(path: string, size: number, chunkSize: number): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    if ((await fh.stat()).size !== size) return undefined;
    const sums: string[] = [];
    const buf = Buffer.alloc(chunkSize);
    for (let index = 0; index * chunkSize < size; index++) {
      const length = chunkLength(size, chunkSize, index);
      const { bytesRead } = await fh.read(buf, 0, length, index * chunkSize);
      if (bytesRead !== length) return undefined;
      sums.push(sha256(buf.subarray(0, length)));
    }
    return chunksDigest(sums);
  } finally {
    await fh.close();
  }
}

async function forget(part: string): Promise<void> {
  const state = states.get(part);
  if (state) letGo(state);
  states.delete(part);
  await rm(part, { force: true });
  await rm(`${part}.chunks`, { force: true });
}
