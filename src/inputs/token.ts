/**
 * The token of the TCP and HTTP listeners: loopback is no user boundary (any
 * local user, and any web page in the operator's browser, can reach
 * 127.0.0.1), so those listeners take messages only from who can read
 * `configFolder/listener.token`. It is created on the node's first start with
 * a listener (32 random bytes, base64url, mode 0600); the node refuses to start
 * when other users can read it, as it does for its key (src/security/identity.ts).
 * The unix socket needs no token: its file mode is the boundary.
 *
 *   TCP:  the first line of a connection is `TOKEN <token>`
 *   HTTP: `Authorization: Bearer <token>`
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.js";

export const TOKEN_FILE = "listener.token";

/** The listeners' token from `configFolder`, created (0600) when there is none. */
export function loadOrCreateListenerToken(configFolder: string): { token: string; path: string; created: boolean } {
  const path = join(configFolder, TOKEN_FILE);
  let created = false;
  if (!existsSync(path)) {
    mkdirSync(configFolder, { recursive: true, mode: 0o700 });
    try {
      // "wx": never overwrite a token another process wrote meanwhile.
      writeFileSync(path, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
      chmodSync(path, 0o600);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  return { token: readListenerToken(configFolder), path, created };
}

/** Read the token (a client does this too); refuses a token other users can read. */
export function readListenerToken(configFolder: string): string {
  const path = join(configFolder, TOKEN_FILE);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077)
    throw new ConfigError(
      "configFolder",
      `${path} is readable by other users (mode ${mode.toString(8)}): anyone who reads it can send commands through the TCP and HTTP listeners; run "chmod 600 ${path}" (or delete it to make a new one at the next start)`,
    );
  const token = readFileSync(path, "utf8").trim();
  if (!/^[A-Za-z0-9_-]{32,}$/.test(token))
    throw new ConfigError("configFolder", `${path} holds no token; delete it to make a new one at the next start`);
  return token;
}

/** Whether `given` is the token, in time that does not depend on where they differ. */
export function tokenMatches(token: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(token);
  const b = Buffer.from(given);
  // Equal lengths for timingSafeEqual; the length of a token is no secret.
  return a.length === b.length && timingSafeEqual(a, b);
}
