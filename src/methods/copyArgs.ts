/**
 * What copySrc and copyDst share: the copy the operator asked for, read from its copySrc request, and the
 * layout of copyDst's arguments. Every copyDst carries that request, in the signed frame it reached the source
 * in, as its grant: the destination lets a chunk in only for a copy an allowed operator asked for
 * (src/delivery/copyGrant.ts checks it; docs/SECURITY.md, "Copy").
 *
 *   copyDst methodArgs: [step, grant, size, chunkSize, …]
 *     status                      → reply data: the indexes of the chunks the destination holds (ranges());
 *                                   the destination takes the copy's chunks from now on
 *     finish  digest, mode        → the file renamed into place; reply data: its path
 *     abandon                     → the copy's files deleted: the source gave it up
 *
 * The chunks between the two are not messages (src/delivery/copyChunks.ts).
 */
import { createHash } from "node:crypto";
import type { Envelope } from "../message/message.js";
import { readHeader } from "../security/frame.js";

export type CopyStep = "status" | "finish" | "abandon";

/** The smallest chunk: a page. */
export const MIN_CHUNK = 4096;
/**
 * The most chunks one copy has, so that what both ends keep per chunk (its sha256, whether it is written) stays
 * near 150 MiB however large the file, or a source says it is: 512 GiB at the default chunk size, 1 TiB at the
 * largest a 1 MiB max_payload takes; a larger file needs a larger chunkSize (and max_payload).
 */
export const MAX_CHUNKS = 1024 * 1024;

export const chunkCount = (size: number, chunkSize: number): number => Math.ceil(size / chunkSize);

/** What names a copy on the wire and in file names: short, and the same on both ends and after restarts. */
export const copyTag = (copyId: string): string => createHash("sha256").update(copyId).digest("hex").slice(0, 16);

/** The copy as its operator asked for it (copySrc's methodArgs, ctrl's order). */
export interface CopyRequest {
  /** The copySrc request's id: names the copy on both ends. */
  id: string;
  /** The node whose operator asked for it (the copySrc's sender). */
  operator: string;
  /** The node that reads the file (the copySrc's receiver). */
  source: string;
  srcPath: string;
  dstNode: string;
  dstPath: string;
  /** Bytes per chunk asked for; 0: the default. */
  chunkSize: number;
  /** Seconds the copy may take; 0: the copySrc's methodTimeout. */
  maxTime: number;
  /** The mode of the file written, e.g. "0644"; "": the source file's. */
  mode: string;
}

export function copyRequest(message: Envelope): CopyRequest {
  const [srcPath = "", dstNode = "", dstPath = "", chunkSize = "", maxTime = "", mode = ""] = message.methodArgs;
  return {
    id: message.id,
    operator: message.fromNode,
    source: message.toNode,
    srcPath,
    dstNode,
    dstPath,
    chunkSize: Number(chunkSize || 0),
    maxTime: Number(maxTime || 0),
    mode,
  };
}

/** The signer and request inside a grant (base64 of a signed frame), unverified: the inbox has verified it. */
export function readGrant(grant: string): { signer: string; body: Uint8Array; request: Envelope } | undefined {
  const header = readHeader(Buffer.from(grant, "base64"));
  if (!header) return undefined;
  try {
    const request = JSON.parse(Buffer.from(header.body).toString("utf8")) as Envelope;
    if (request === null || typeof request !== "object" || !Array.isArray(request.methodArgs)) return undefined;
    return { signer: header.signer, body: header.body, request };
  } catch {
    return undefined;
  }
}

/**
 * What a copy's chunks add up to: the sha256 of their sha256s, in order. The source has each chunk's from
 * reading it, the destination from checking it on arrival, so the destination does not read the whole file
 * again to agree on it; the sha256 of the whole file is the source's, taken as it reads.
 */
export const chunksDigest = (sums: readonly string[]): string =>
  createHash("sha256").update(sums.join("\n")).digest("hex");

/** Sorted indexes as ranges, "0-99,101,103-200": short whatever the number of chunks. */
export function ranges(indexes: number[]): string {
  const sorted = indexes.sort((x, y) => x - y);
  const out: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out.join(",");
}

/** The indexes in ranges() text. */
export function fromRanges(text: string): Set<number> {
  const out = new Set<number>();
  for (const piece of text.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(piece.trim());
    if (!m) continue;
    const from = Number(m[1]);
    const to = Number(m[2] ?? m[1]);
    for (let i = from; i <= to && i - from < 1e7; i++) out.add(i);
  }
  return out;
}
