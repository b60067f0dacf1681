/**
 * A node's identity: one ed25519 key pair, created on its first start. The
 * private key stays in `configFolder/steward.key`, readable only by the node's
 * user (the node refuses to start when others can read it, as ssh does);
 * the public key travels in the node's hellos and in central's bundle.
 *
 * Public keys are written as the raw 32 bytes in base64url (43 characters):
 * short enough for a log line and for `steward keys list`.
 *
 * Signing and checking use libsodium (sodium-native) when it loads: on the
 * machines measured it signs twice and checks 2.1 times as fast as Node's own
 * crypto (OpenSSL), and a node checks a signature on every frame it takes
 * (docs/PERFORMANCE.md). Both make the same standard ed25519 signatures, so
 * a node without it (a platform with no prebuilt binary) falls back to Node's
 * crypto and still speaks with every other node.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { ConfigError } from "../errors.js";

export const KEY_FILE = "steward.key";

/** SPKI DER prefix of an ed25519 public key: the raw 32 bytes follow. */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** The two calls of libsodium used here (sodium-native has no types of its own). */
interface Sodium {
  crypto_sign_detached(signature: Buffer, message: Uint8Array, secretKey: Buffer): void;
  crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}

function loadSodium(): Sodium | undefined {
  if (process.env.STEWARD_NO_SODIUM) return undefined;
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined;
  }
}

const sodium = loadSodium();

/** Which ed25519 implementation this process uses, for the logs and the bench. */
export const SIGNER_LIBRARY = sodium ? "libsodium" : "node:crypto";

/**
 * A public key, ready for checking signatures with either implementation. Node's KeyObject is made only
 * when first needed: a node reads every key of every bundle, and with libsodium it never needs one.
 */
export class PublicKey {
  private object: KeyObject | undefined;

  constructor(
    /** Raw, base64url: as written in bundles, hellos and settings. */
    readonly text: string,
    readonly raw: Buffer,
  ) {}

  get node(): KeyObject {
    this.object ??= createPublicKey({ key: Buffer.concat([SPKI_PREFIX, this.raw]), format: "der", type: "spki" });
    return this.object;
  }
}

export interface Identity {
  name: string;
  /** The public key, raw, base64url. */
  publicKey: string;
  key: KeyObject;
  sign(data: Uint8Array): Buffer;
}

/** This node's key pair from `configFolder`, created (0600) when there is none. */
export function loadOrCreateIdentity(configFolder: string, name: string): { identity: Identity; created: boolean } {
  const path = join(configFolder, KEY_FILE);
  let created = false;
  if (!existsSync(path)) {
    mkdirSync(configFolder, { recursive: true });
    const { privateKey } = generateKeyPairSync("ed25519");
    // "wx": never overwrite a key another process wrote meanwhile.
    writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
    chmodSync(path, 0o600);
    created = true;
  }
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new ConfigError(
      "configFolder",
      `${path} is readable by other users (mode ${mode.toString(8)}): anyone who reads it can act as ${name}; run "chmod 600 ${path}" (and consider the key leaked)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (err) {
    throw new ConfigError(
      "configFolder",
      `${path} is not a private key (${(err as Error).message}); move it away to create a new one`,
    );
  }
  if (key.asymmetricKeyType !== "ed25519") throw new ConfigError("configFolder", `${path} is not an ed25519 key`);
  return { identity: identityOf(name, key), created };
}

/** An identity from a private key. */
export function identityOf(name: string, key: KeyObject): Identity {
  const publicKey = rawPublicKey(createPublicKey(key));
  if (!sodium) return { name, publicKey, key, sign: (data) => sign(null, data, key) };
  // libsodium's secret key is the 32-byte seed followed by the public key.
  const seed = Buffer.from(key.export({ format: "jwk" }).d as string, "base64url");
  const secretKey = Buffer.concat([seed, Buffer.from(publicKey, "base64url")]);
  return {
    name,
    publicKey,
    key,
    sign: (data) => {
      const signature = Buffer.alloc(64);
      sodium.crypto_sign_detached(signature, data, secretKey);
      return signature;
    },
  };
}

export function rawPublicKey(key: KeyObject): string {
  const der = key.export({ type: "spki", format: "der" });
  return der.subarray(SPKI_PREFIX.length).toString("base64url");
}

/** A public key from its base64url form; undefined when it is not one. */
export function parsePublicKey(text: string): PublicKey | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined;
  const raw = Buffer.from(text, "base64url");
  return raw.length === 32 ? new PublicKey(text, raw) : undefined;
}

export function verifySignature(key: PublicKey, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (sodium) return signature.length === 64 && sodium.crypto_sign_verify_detached(signature, data, key.raw);
    return verify(null, data, key.node, signature);
  } catch {
    return false;
  }
}
