/**
 * Signed frames: every payload a node puts on the broker is
 *
 *   SW1 <signer> <signature>\n<body>
 *
 * The ed25519 signature (base64url) covers "SW1 <signer>\n<subject>\n" and
 * then the body: the exact bytes that travel and the subject they travel on,
 * so a message cannot be moved to another node's subject, an ACK to another
 * request's inbox, or a field changed. The receiver verifies before it parses
 * the body: there is no canonical form to get wrong. The signer's name is in
 * the clear so that the receiver can pick the key (and a broker can later
 * match it against the subject).
 */
import { type Identity, type PublicKey, verifySignature } from "./identity.js";

const MAGIC = "SW1";
/** Longest header read: magic, a node name (≤ 128), an 86-character signature. */
const MAX_HEADER = 256;
const encoder = new TextEncoder();

export interface FrameHeader {
  signer: string;
  signature: Buffer;
  body: Uint8Array;
}

export type Opened =
  | { ok: true; signer: string; body: Uint8Array }
  | { ok: false; signer?: string; kind: "unsigned" | "unknown signer" | "bad signature"; problem: string };

function signedPart(signer: string, subject: string, body: Uint8Array): Buffer {
  return Buffer.concat([encoder.encode(`${MAGIC} ${signer}\n${subject}\n`), body]);
}

/** Sign `body` for `subject` as `identity`. */
export function seal(identity: Identity, subject: string, body: Uint8Array): Uint8Array {
  const signature = identity.sign(signedPart(identity.name, subject, body)).toString("base64url");
  return Buffer.concat([encoder.encode(`${MAGIC} ${identity.name} ${signature}\n`), body]);
}

/** The header of a frame, unverified; undefined when the bytes are no frame. */
export function readHeader(bytes: Uint8Array): FrameHeader | undefined {
  const end = bytes.subarray(0, MAX_HEADER).indexOf(10);
  if (end < 0) return undefined;
  const words = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString("latin1").split(" ");
  if (words.length !== 3 || words[0] !== MAGIC) return undefined;
  const [, signer = "", sig = ""] = words;
  if (!signer || !/^[A-Za-z0-9_-]{86}$/.test(sig)) return undefined;
  return { signer, signature: Buffer.from(sig, "base64url"), body: bytes.subarray(end + 1) };
}

/** Verify a frame against the key of its signer (`keyOf`); only then is its body worth reading. */
export function open(bytes: Uint8Array, subject: string, keyOf: (name: string) => PublicKey | undefined): Opened {
  const header = readHeader(bytes);
  if (!header) return { ok: false, kind: "unsigned", problem: "not a signed frame" };
  return verifyHeader(header, subject, keyOf(header.signer));
}

/** Check a frame's signature with a given key (undefined: the signer is not known here). */
export function verifyHeader(header: FrameHeader, subject: string, key: PublicKey | undefined): Opened {
  const { signer } = header;
  if (!key) return { ok: false, signer, kind: "unknown signer", problem: `${signer} has no admitted key here` };
  if (!verifySignature(key, signedPart(signer, subject, header.body), header.signature))
    return { ok: false, signer, kind: "bad signature", problem: `signature does not match ${signer}'s key` };
  return { ok: true, signer, body: header.body };
}
