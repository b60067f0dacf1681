/**
 * Fixtures for the broker-security tests: nkeys, a NATS operator/account/user
 * chain with a .creds file, and a small PKI (CA, server and client
 * certificates) made with the openssl CLI. Everything is generated fresh in
 * the test's temp dir; nothing is checked in.
 */
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const b64url = (s: string | Uint8Array): string => Buffer.from(s).toString("base64url");

/** A user nkey: its seed written to `<dir>/<name>.nk`, and its public key. */
export function makeUserNkey(dir: string, name: string): { seedFile: string; publicKey: string } {
  const kp = createUser();
  const seedFile = join(dir, `${name}.nk`);
  writeFileSync(seedFile, `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600 });
  return { seedFile, publicKey: kp.getPublicKey() };
}

/**
 * A NATS JWT (v2) signed by `issuer`, as `nsc` would make it. The server
 * checks the ed25519 signature and the claims; `jti` is a hash of the claims.
 */
function signJwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const claims: Record<string, unknown> = {
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats,
  };
  claims.jti = createHash("sha512-256").update(JSON.stringify(claims)).digest("hex").toUpperCase();
  const body = b64url(JSON.stringify(claims));
  const sig = b64url(issuer.sign(new TextEncoder().encode(`${header}.${body}`)));
  return `${header}.${body}.${sig}`;
}

const UNLIMITED = { subs: -1, data: -1, payload: -1 };

export interface OperatorSetup {
  /** nats-server config for operator mode with the account preloaded. */
  serverConf: string;
  /** Write a .creds file for a new user of the account. */
  creds(name: string): string;
  /** Write a .creds file for a user signed by an account the server does not know. */
  foreignCreds(name: string): string;
}

/** An operator, one account, and users of that account: decentralised auth without `nsc`. */
export function makeOperator(dir: string): OperatorSetup {
  const operator = createOperator();
  const account = createAccount();
  const operatorJwt = signJwt(operator, operator.getPublicKey(), "steward-test", { type: "operator", version: 2 });
  const accountJwt = signJwt(operator, account.getPublicKey(), "fleet", {
    type: "account",
    version: 2,
    limits: { ...UNLIMITED, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
    default_permissions: { pub: {}, sub: {} },
  });
  const writeCreds = (name: string, signer: KeyPair): string => {
    const user = createUser();
    const jwt = signJwt(signer, user.getPublicKey(), name, {
      type: "user",
      version: 2,
      pub: {},
      sub: {},
      ...UNLIMITED,
    });
    const file = join(dir, `${name}.creds`);
    writeFileSync(
      file,
      [
        "-----BEGIN NATS USER JWT-----",
        jwt,
        "------END NATS USER JWT------",
        "",
        "************************* IMPORTANT *************************",
        "NKEY Seed printed below can be used to sign and prove identity.",
        "NKEYs are sensitive and should be treated as secrets.",
        "",
        "-----BEGIN USER NKEY SEED-----",
        new TextDecoder().decode(user.getSeed()),
        "------END USER NKEY SEED------",
        "",
        "*************************************************************",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    return file;
  };
  const serverConf = [
    `operator: ${operatorJwt}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${account.getPublicKey()}: ${accountJwt}`,
    "}",
    "",
  ].join("\n");
  return {
    serverConf,
    creds: (name) => writeCreds(name, account),
    foreignCreds: (name) => writeCreds(name, createAccount()),
  };
}

export interface Pki {
  caFile: string;
  serverCert: string;
  serverKey: string;
  /** Client certificate and key signed by the CA. */
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl. */
export function makePki(dir: string): Pki {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Steward test CA");
  const issue = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    run("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-set_serial",
      `0x${Date.now().toString(16)}${name.length}`,
      "-days",
      "2",
      "-out",
      `${name}.pem`,
      "-extfile",
      `${name}.ext`,
    );
  };
  issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  issue("client", "steward-node", "extendedKeyUsage=clientAuth\n");
  return {
    caFile: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}

/** nats-server config requiring TLS with a client certificate signed by the CA. */
export function tlsServerConf(pki: Pki): string {
  return [
    "tls {",
    `  cert_file: "${pki.serverCert}"`,
    `  key_file: "${pki.serverKey}"`,
    `  ca_file: "${pki.caFile}"`,
    "  verify: true",
    "  timeout: 2",
    "}",
    "",
  ].join("\n");
}

/** Lines of a log file that match `re`, and the stack-trace lines ("    at …") in it. */
export function logLines(file: string, re: RegExp): { matching: string[]; stack: string[]; all: string[] } {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // not written yet
  }
  const all = text.split("\n").filter(Boolean);
  return { matching: all.filter((l) => re.test(l)), stack: all.filter((l) => /^\s+at /.test(l)), all };
}
