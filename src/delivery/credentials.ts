/**
 * What a node presents to the broker — an nkey seed, a creds file, TLS
 * certificates — read from the files its settings name, and the one line
 * that explains a refused connection to the operator: what went wrong, which
 * setting to check, what to do.
 */
import {
  type Authenticator,
  AuthorizationError,
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
  PermissionViolationError,
  TimeoutError,
  type TlsOptions,
  UserAuthenticationExpiredError,
} from "@nats-io/transport-node";
import { readFile } from "node:fs/promises";
import { isIP, connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";

/** The settings that say how to reach and authenticate to the broker. */
export interface BrokerSecuritySettings {
  brokerAddress: string;
  /** File holding a user nkey seed ("SU…") to authenticate with. Unset or "" = none. */
  nkeySeedFile?: string;
  /** NATS user credentials file (user JWT + nkey seed). Unset or "" = none. */
  credsFile?: string;
  /** PEM root CA(s) to verify the broker's TLS certificate with (instead of the system's). */
  rootCAPath?: string;
  /** PEM client certificate for TLS to the broker; needs tlsKeyFile. */
  tlsCertFile?: string;
  /** PEM key of tlsCertFile. */
  tlsKeyFile?: string;
}

/** Authentication and TLS options for one connection attempt, read from the configured files. */
export interface Security {
  authenticator?: Authenticator;
  tls?: TlsOptions;
}

/** A broker-link problem already worded for the operator: logged as is, without a stack. */
class LinkProblem extends Error {}

export class BrokerCredentials {
  /** Public key of the configured nkey seed, to name in a refusal. */
  private nkeyPublic = "";

  constructor(private readonly settings: BrokerSecuritySettings) {}

  /** Read the key, credentials and certificate files afresh for each attempt, so that fixing one needs no restart. */
  async load(): Promise<Security> {
    const { nkeySeedFile, credsFile, rootCAPath, tlsCertFile, tlsKeyFile } = this.settings;
    const read = async (setting: string, path: string): Promise<string> => {
      try {
        return await readFile(path, "utf8");
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message;
        throw new LinkProblem(`cannot read ${setting} ${path}: ${why}`);
      }
    };
    const out: Security = {};
    if (nkeySeedFile && credsFile) {
      throw new LinkProblem(
        `both nkeySeedFile (${nkeySeedFile}) and natsCredsFile (${credsFile}) are set; a creds file holds its own seed: set only one`,
      );
    }
    if (nkeySeedFile) {
      const text = await read("nkeySeedFile", nkeySeedFile);
      const seed = text
        .split("\n")
        .map((l) => l.trim())
        .find((l) => l.startsWith("SU"));
      if (!seed)
        throw new LinkProblem(`nkeySeedFile ${nkeySeedFile} holds no user nkey seed (a line starting with "SU")`);
      const bytes = new TextEncoder().encode(seed);
      try {
        this.nkeyPublic = nkeys.fromSeed(bytes).getPublicKey();
      } catch (err) {
        throw new LinkProblem(`nkeySeedFile ${nkeySeedFile} holds no valid nkey seed: ${(err as Error).message}`);
      }
      out.authenticator = nkeyAuthenticator(bytes);
    }
    if (credsFile) {
      const bytes = new TextEncoder().encode(await read("natsCredsFile", credsFile));
      const authenticator = credsAuthenticator(bytes);
      try {
        authenticator("check");
      } catch (err) {
        throw new LinkProblem(
          `natsCredsFile ${credsFile} is not a NATS credentials file (${(err as Error).message}); expected a "BEGIN NATS USER JWT" block and a "BEGIN USER NKEY SEED" block, as nsc writes them`,
        );
      }
      out.authenticator = authenticator;
    }
    if (Boolean(tlsCertFile) !== Boolean(tlsKeyFile)) {
      throw new LinkProblem(
        tlsCertFile
          ? `tlsCertFile ${tlsCertFile} is set but tlsKeyFile is not`
          : `tlsKeyFile ${tlsKeyFile} is set but tlsCertFile is not`,
      );
    }
    if (rootCAPath || tlsCertFile) {
      const tls: TlsOptions = {};
      const pem = async (setting: string, path: string, what: "certificate" | "private key"): Promise<string> => {
        const text = await read(setting, path);
        const begin = what === "certificate" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
        if (!begin.test(text)) throw new LinkProblem(`${setting} ${path} holds no PEM ${what}`);
        return text;
      };
      if (rootCAPath) tls.ca = await pem("rootCAPath", rootCAPath, "certificate");
      if (tlsCertFile && tlsKeyFile) {
        tls.cert = await pem("tlsCertFile", tlsCertFile, "certificate");
        tls.key = await pem("tlsKeyFile", tlsKeyFile, "private key");
      }
      out.tls = tls;
    }
    return out;
  }

  /** One line that says what went wrong and what to check, for a failed attempt or a broker error. */
  async explain(err: unknown, tls?: TlsOptions): Promise<string> {
    if (err instanceof LinkProblem) return err.message;
    const { nkeySeedFile, credsFile, tlsCertFile, brokerAddress } = this.settings;
    const e = err as Error & { code?: string };
    const message = e.message ?? String(err);
    if (err instanceof PermissionViolationError) {
      const what = err.operation === "subscription" ? "read" : "publish to";
      return `the broker does not let this node ${what} ${err.subject}: the permissions of its credential${nkeySeedFile ? ` (nkeySeedFile ${nkeySeedFile}, ${this.nkeyPublic})` : credsFile ? ` (natsCredsFile ${credsFile})` : ""} do not allow it; is it another node's credential? "steward broker-config" writes one per node`;
    }
    if (err instanceof UserAuthenticationExpiredError) {
      return `broker refused the credentials from natsCredsFile ${credsFile ?? ""}: ${message}; the user JWT has expired: get a new creds file`;
    }
    if (err instanceof AuthorizationError) {
      if (credsFile) {
        return `broker refused the credentials from natsCredsFile ${credsFile}: ${message}; check that the broker trusts the account that signed this user`;
      }
      if (nkeySeedFile) {
        return `broker refused the credentials from nkeySeedFile ${nkeySeedFile}: ${message}; check that the broker's authorization lists this seed's public key ${this.nkeyPublic}`;
      }
      if (tlsCertFile) {
        return `broker refused the TLS client certificate from tlsCertFile ${tlsCertFile}: ${message}; check the broker's authorization for this certificate`;
      }
      return `broker requires credentials: ${message}; set nkeySeedFile or natsCredsFile`;
    }
    if (tls) {
      // nats.js reports a TLS 1.3 refusal of the client certificate (it arrives after the handshake) as a timeout.
      const cause = err instanceof TimeoutError ? await this.probeTls(tls) : e;
      if (cause) {
        const code = cause.code ?? "";
        const reason = /SSL routines:[^:]*:([^:]+)/.exec(cause.message)?.[1] ?? cause.message;
        if (/ALERT/.test(code)) {
          return tls.cert
            ? `broker refused the TLS client certificate from tlsCertFile ${tlsCertFile}: ${reason}; check that it is signed by a CA the broker trusts`
            : `broker refused the TLS connection: ${reason}; it wants a client certificate: set tlsCertFile and tlsKeyFile`;
        }
        if (/CERT|SIGNATURE|ISSUER|ALTNAME/.test(code)) {
          return `the broker's TLS certificate is not trusted: ${reason}; check rootCAPath${this.settings.rootCAPath ? ` (${this.settings.rootCAPath})` : ""} and the host in brokerAddress`;
        }
        if (/does not support 'tls'/.test(cause.message)) {
          return `broker at ${brokerAddress} does not offer TLS, but rootCAPath or tlsCertFile is set`;
        }
        return cause.message;
      }
    }
    return message;
  }

  /** Open a TLS link by hand to the first broker and see whether it refuses us; undefined when it does not. */
  private probeTls(tls: TlsOptions): Promise<(Error & { code?: string }) | undefined> {
    const first = this.settings.brokerAddress.split(",")[0]?.trim() ?? "";
    let url: URL;
    try {
      url = new URL(first.includes("://") ? first : `nats://${first}`);
    } catch {
      return Promise.resolve(undefined);
    }
    const host = url.hostname.replace(/^\[|\]$/g, "");
    return new Promise((resolve) => {
      const sock = tcpConnect(Number(url.port || 4222), host);
      let secured: ReturnType<typeof tlsConnect> | undefined;
      const done = (err?: Error) => {
        clearTimeout(timer);
        secured?.destroy();
        sock.destroy();
        resolve(err);
      };
      const timer = setTimeout(() => done(), 5_000);
      sock.once("error", () => done());
      // The broker speaks first (INFO, in clear); TLS starts after it.
      sock.once("data", () => {
        secured = tlsConnect({
          socket: sock,
          host,
          ...(isIP(host) ? {} : { servername: host }),
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
        });
        secured.once("error", done);
        secured.once("secureConnect", () => secured?.write("PING\r\n"));
        secured.once("data", () => done());
      });
    });
  }
}
