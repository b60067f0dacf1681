/**
 * A node's identity: one ed25519 key pair, created on its first start. The
 * private key stays in `configFolder/steward.key`, readable only by the node's
 * user (the node refuses to start when others can read it, as ssh does);
 * the public key travels in the node's hellos and in central's bundle.
 *
 * Public keys are written as the raw 32 bytes in base64url (43 characters):
 * short enough for a log line and for `steward keys list`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.js";

export const KEY_FILE = "steward.key";

/** SPKI DER prefix of an ed25519 public key: the raw 32 bytes follow. */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

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
  return {
    identity: { name, publicKey: rawPublicKey(createPublicKey(key)), key, sign: (data) => sign(null, data, key) },
    created,
  };
}

export function rawPublicKey(key: KeyObject): string {
  const der = key.export({ type: "spki", format: "der" });
  return der.subarray(SPKI_PREFIX.length).toString("base64url");
}

/** A public key from its base64url form; undefined when it is not one. */
export function publicKeyObject(raw: string): KeyObject | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) return undefined;
  try {
    return createPublicKey({
      key: Buffer.concat([SPKI_PREFIX, Buffer.from(raw, "base64url")]),
      format: "der",
      type: "spki",
    });
  } catch {
    return undefined;
  }
}

export function verifySignature(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}
