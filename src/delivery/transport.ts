/**
 * The node's one connection to the broker. It connects outbound only,
 * retries forever (logging each distinct problem once, not a flood), and
 * tells the rest of the node when the link comes up so that pending messages
 * go out at once.
 *
 *   connecting ──connected──▶ up ──disconnect──▶ down ──reconnect──▶ up
 *        └────────────────────── close() ─────────────────────────▶ closed
 */
import {
  type Authenticator,
  AuthorizationError,
  connect,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
  nkeyAuthenticator,
  nkeys,
  RequestError,
  type Subscription,
  TimeoutError,
  type TlsOptions,
  UserAuthenticationExpiredError,
} from "@nats-io/transport-node";
import { readFile } from "node:fs/promises";
import { isIP, connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { Logger } from "../log.js";

export type LinkState = "connecting" | "up" | "down" | "closed";

export interface TransportOptions {
  brokerAddress: string;
  nodeName: string;
  /** Seconds between connection attempts. */
  retryInterval: number;
  log: Logger;
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
interface Security {
  authenticator?: Authenticator;
  tls?: TlsOptions;
}

/** A broker-link problem already worded for the operator: logged as is, without a stack. */
class LinkProblem extends Error {}

export class Transport {
  state: LinkState = "connecting";
  private nc: NatsConnection | undefined;
  private upWaiters: (() => void)[] = [];
  private upListeners: (() => void)[] = [];
  private subs: { subject: string; handler: (msg: Msg) => void; sub?: Subscription }[] = [];
  private closing = false;
  private lastProblem = "";
  /** Public key of the configured nkey seed, to name in a refusal. */
  private nkeyPublic = "";
  /** Ends the wait for a connection attempt when the transport closes. */
  private stopWaiting: (() => void) | undefined;

  constructor(private readonly opts: TransportOptions) {}

  /** Connect in the background; resolves when closed. */
  async run(): Promise<void> {
    const { log } = this.opts;
    while (!this.closing) {
      let tls: TlsOptions | undefined;
      try {
        const security = await this.security();
        if (this.closing) break;
        tls = security.tls;
        const attempt = connect({
          ...security,
          servers: this.opts.brokerAddress.split(",").map((s) => s.trim()),
          name: `steward:${this.opts.nodeName}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.opts.retryInterval * 1000,
          // Edge links die silently: find out within ~15 s, not the default 4 minutes.
          pingInterval: 5_000,
          maxPingOut: 3,
          // Async stack traces cost two Error objects per request (about 11% of a busy sender's CPU, see
          // docs/PERFORMANCE.md); our errors say what failed without them.
          noAsyncTraces: true,
        });
        // close() does not wait out a pending attempt (up to nats.js's 20 s connect timeout).
        const nc = await Promise.race([
          attempt,
          new Promise<undefined>((r) => (this.stopWaiting = () => r(undefined))),
        ]);
        this.stopWaiting = undefined;
        if (!nc || this.closing) {
          attempt
            .then(
              (late) => late.close(),
              () => undefined,
            )
            .catch(() => undefined);
          break;
        }
        this.nc = nc;
        for (const s of this.subs) s.sub = nc.subscribe(s.subject, { callback: (_err, msg) => s.handler(msg) });
        log.info("connected to broker", { broker: nc.getServer() });
        this.setUp();
        void this.watch(nc);
        const err = await nc.closed();
        this.nc = undefined;
        if (this.closing) break;
        this.state = "down";
        log.warn("broker connection closed; connecting again", { reason: err?.message ?? "closed" });
      } catch (err) {
        const problem = await this.explain(err, tls);
        if (problem !== this.lastProblem) {
          log.warn(
            `cannot connect to broker at ${this.opts.brokerAddress}; retrying every ${this.opts.retryInterval}s`,
            {
              reason: problem,
            },
          );
          this.lastProblem = problem;
        }
      }
      if (!this.closing) await new Promise((r) => setTimeout(r, this.opts.retryInterval * 1000));
    }
    this.state = "closed";
    for (const w of this.upWaiters.splice(0)) w();
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        this.state = "down";
        this.opts.log.warn("lost the broker; messages wait in the store until it is back", { server: s.server });
      } else if (s.type === "reconnect") {
        this.opts.log.info("reconnected to broker", { server: s.server });
        this.setUp();
      } else if (s.type === "error") {
        // A refused login repeats at every reconnect attempt: say it once.
        const problem = await this.explain(s.error);
        if (problem !== this.lastProblem) this.opts.log.warn("broker reported an error", { reason: problem });
        this.lastProblem = problem;
      }
    }
  }

  /** Read the key, credentials and certificate files afresh for each attempt, so that fixing one needs no restart. */
  private async security(): Promise<Security> {
    const { nkeySeedFile, credsFile, rootCAPath, tlsCertFile, tlsKeyFile } = this.opts;
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
  private async explain(err: unknown, tls?: TlsOptions): Promise<string> {
    if (err instanceof LinkProblem) return err.message;
    const { nkeySeedFile, credsFile, tlsCertFile, brokerAddress } = this.opts;
    const e = err as Error & { code?: string };
    const message = e.message ?? String(err);
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
          return `the broker's TLS certificate is not trusted: ${reason}; check rootCAPath${this.opts.rootCAPath ? ` (${this.opts.rootCAPath})` : ""} and the host in brokerAddress`;
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
    const first = this.opts.brokerAddress.split(",")[0]?.trim() ?? "";
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

  private setUp(): void {
    this.state = "up";
    this.lastProblem = "";
    for (const w of this.upWaiters.splice(0)) w();
    for (const l of this.upListeners) l();
  }

  /** Resolves when the link is up (at once if it is), or when the transport closes. */
  whenUp(): Promise<void> {
    if (this.state === "up" || this.state === "closed") return Promise.resolve();
    return new Promise((resolve) => this.upWaiters.push(resolve));
  }

  /** Called on every (re)connect. */
  onUp(listener: () => void): void {
    this.upListeners.push(listener);
  }

  /** Subscribe now and after every new connection; returns what ends the subscription. */
  subscribe(subject: string, handler: (msg: Msg) => void): () => void {
    const entry: (typeof this.subs)[number] = { subject, handler };
    this.subs.push(entry);
    if (this.nc) entry.sub = this.nc.subscribe(subject, { callback: (_err, msg) => handler(msg) });
    return () => {
      this.subs = this.subs.filter((s) => s !== entry);
      entry.sub?.unsubscribe();
    };
  }

  /** Largest payload the broker takes in one message. */
  get maxPayload(): number {
    return this.nc?.info?.max_payload ?? 1024 * 1024;
  }

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const nc = this.nc;
    if (!nc || this.state !== "up") throw new Error("not connected to the broker");
    try {
      const reply = await nc.request(subject, data, { timeout: timeoutMs });
      return reply.data;
    } catch (err) {
      if (err instanceof RequestError && err.isNoResponders()) {
        throw new Error(`no subscriber on ${subject}`);
      }
      throw err;
    }
  }

  /** Fire and forget; false when there is no connection to publish on. */
  publish(subject: string, data: Uint8Array): boolean {
    const nc = this.nc;
    if (!nc || this.state !== "up") return false;
    try {
      nc.publish(subject, data);
      return true;
    } catch (err) {
      this.opts.log.warn("cannot publish", { subject, reason: (err as Error).message });
      return false;
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    this.stopWaiting?.();
    const nc = this.nc;
    if (nc) {
      try {
        await nc.drain();
      } catch {
        await nc.close().catch(() => undefined);
      }
    }
    for (const w of this.upWaiters.splice(0)) w();
  }
}
