/**
 * copyDst: the destination's side of a copy (copySrc.ts sends it). Chunks are written at their offsets into a
 * temporary file beside the destination path, and each written chunk is noted in a small file beside it, so a
 * restart of either end goes on from the chunks already here:
 *
 *   .<name>.<copy>.part          the file being written
 *   .<name>.<copy>.part.chunks   "steward-copy <size> <chunkSize>", then "<index> <sha256>" per chunk written
 *
 *   status  the chunks held, each checked again against its sha256 (a power cut may have lost a write)
 *   chunk   its sha256 checked, written at index × chunkSize, noted
 *   finish  every chunk held, the whole sha256 checked, the mode set, renamed into place; done already (a
 *           re-sent finish): the same answer
 *
 * Where: the grant's dstPath (src/methods/copyArgs.ts), never the chunk's: relative inside the data folder, an
 * absolute one only from an operator src/delivery/copyGrant.ts lets write there. Steps of one copy run one at a
 * time (several chunks arrive at once); different copies do not wait for each other.
 */
import { createHash } from "node:crypto";
import { appendFile, chmod, open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { MethodError } from "../errors.js";
import { type CopyRequest, copyRequest, ranges, readGrant } from "./copyArgs.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { ensureDir, inside } from "./paths.js";

interface CopyState {
  size: number;
  chunkSize: number;
  /** Chunk index → its sha256, for the chunks written. */
  have: Map<number, string>;
}

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
  const tag = createHash("sha256").update(copy.id).digest("hex").slice(0, 16);
  const part = join(dirname(target), `.${basename(target)}.${tag}.part`);
  const job = async (): Promise<MethodOutput> => {
    if (step === "status") return { exitCode: 0, data: ranges([...(await checked(part, size, chunkSize)).keys()]) };
    if (step === "chunk") return writeChunk(ctx, part, size, chunkSize, Number(a), b);
    return finish(part, target, size, chunkSize, a, copy.mode || b);
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
  const state: CopyState = { size, chunkSize, have: new Map() };
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
  } else {
    await ensureDir(dirname(part));
    await rm(part, { force: true });
    await appendFile(`${part}.chunks`, `steward-copy ${size} ${chunkSize}\n`, { flag: "w" });
  }
  states.set(part, state);
  return state;
}

/** The chunks held, each read back and checked against its sha256; one that fails is dropped, to be sent again. */
async function checked(part: string, size: number, chunkSize: number): Promise<Map<number, string>> {
  const state = await load(part, size, chunkSize);
  if (state.have.size === 0) return state.have;
  let fh;
  try {
    fh = await open(part, "r");
  } catch {
    state.have.clear();
    return state.have;
  }
  try {
    const buf = Buffer.alloc(chunkSize);
    for (const [index, sum] of state.have) {
      const length = chunkLength(size, chunkSize, index);
      const { bytesRead } = await fh.read(buf, 0, length, index * chunkSize);
      if (bytesRead !== length || sha256(buf.subarray(0, length)) !== sum) state.have.delete(index);
    }
  } finally {
    await fh.close();
  }
  return state.have;
}

function chunkLength(size: number, chunkSize: number, index: number): number {
  return Math.max(0, Math.min(chunkSize, size - index * chunkSize));
}

async function writeChunk(
  ctx: MethodContext,
  part: string,
  size: number,
  chunkSize: number,
  index: number,
  sum: string,
): Promise<MethodOutput> {
  const state = await load(part, size, chunkSize);
  const length = chunkLength(size, chunkSize, index);
  const bytes = Buffer.from(ctx.message.data ?? "", "base64");
  if (!Number.isSafeInteger(index) || index < 0 || length === 0 || bytes.length !== length)
    throw new MethodError("copyDst", `chunk ${index}: ${bytes.length} bytes where ${length} belong`);
  if (sha256(bytes) !== sum) throw new MethodError("copyDst", `chunk ${index}: its sha256 does not match`);
  if (state.have.get(index) === sum) return { exitCode: 0, data: "" };
  const fh = await open(part, "r+").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return open(part, "w+");
    throw err;
  });
  try {
    await fh.write(bytes, 0, length, index * chunkSize);
  } finally {
    await fh.close();
  }
  await appendFile(`${part}.chunks`, `${index} ${sum}\n`);
  state.have.set(index, sum);
  return { exitCode: 0, data: "" };
}

async function finish(
  part: string,
  target: string,
  size: number,
  chunkSize: number,
  sum: string,
  mode: string,
): Promise<MethodOutput> {
  const done = { exitCode: 0, data: target };
  const state = await load(part, size, chunkSize);
  const count = Math.ceil(size / chunkSize);
  // A re-sent finish, the file in place already: the same answer, and no state left behind.
  if (state.have.size === 0 && count > 0 && (await fileSum(target)) === sum) {
    await forget(part);
    return done;
  }
  const missing = count - [...state.have.keys()].filter((i) => i < count).length;
  if (missing > 0) throw new MethodError("copyDst", `${target}: ${missing} of ${count} chunks have not arrived`);
  if (count === 0) await appendFile(part, "");
  const whole = await fileSum(part);
  if (whole !== sum) {
    await forget(part);
    throw new MethodError(
      "copyDst",
      `${target}: the sha256 of the whole file does not match (the source file changed during the copy?); send the copy again`,
    );
  }
  await chmod(part, parseInt(mode || "0644", 8));
  await rename(part, target);
  await forget(part);
  return done;
}

async function forget(part: string): Promise<void> {
  states.delete(part);
  await rm(part, { force: true });
  await rm(`${part}.chunks`, { force: true });
}

async function fileSum(path: string): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  const hash = createHash("sha256");
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest("hex");
}
