/**
 * The node's one connection to the broker. It connects outbound only,
 * retries forever (logging each distinct problem once, not a flood), and
 * tells the rest of the node when the link comes up so that pending messages
 * go out at once.
 *
 *   connecting ──connected──▶ up ──disconnect──▶ down ──reconnect──▶ up
 *        └────────────────────── close() ─────────────────────────▶ closed
 */
import { connect, createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "../log.js";
import { BrokerCredentials, type BrokerSecuritySettings, type Security } from "./credentials.js";
import { inboxPrefix } from "./subjects.js";

export type LinkState = "connecting" | "up" | "down" | "closed";

export interface TransportOptions extends BrokerSecuritySettings {
  nodeName: string;
  /** Seconds between connection attempts. */
  retryInterval: number;
  log: Logger;
}

export class Transport {
  state: LinkState = "connecting";
  private nc: NatsConnection | undefined;
  private upWaiters: (() => void)[] = [];
  private upListeners: (() => void)[] = [];
  private subs: { subject: string; handler: (msg: Msg) => void; sub?: Subscription }[] = [];
  private closing = false;
  /** This connection's inbox: answers to requests come on `<inbox>.<n>`. */
  private inbox = "";
  private requests = 0;
  private answers = new Map<string, (msg: Msg) => void>();
  /** Ends each request still waiting for its answer: close() ends them, so a stop never waits out an ACKTimeout. */
  private waiting = new Set<(err: Error) => void>();
  private lastProblem = "";
  private readonly credentials: BrokerCredentials;
  /** Ends the wait for a connection attempt when the transport closes. */
  private stopWaiting: (() => void) | undefined;

  constructor(private readonly opts: TransportOptions) {
    this.credentials = new BrokerCredentials(opts);
  }

  /** Connect in the background; resolves when closed. */
  async run(): Promise<void> {
    const { log } = this.opts;
    while (!this.closing) {
      let tls: Security["tls"];
      try {
        // Read afresh for each attempt, so that fixing a file needs no restart.
        const security = await this.credentials.load();
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
          inboxPrefix: inboxPrefix(this.opts.nodeName),
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
        // Under the node's own prefix, the one inbox a least-privilege broker config lets it read.
        this.inbox = createInbox(inboxPrefix(this.opts.nodeName));
        // An answer is checked in the next turn: a reply that came in the same read (a ping's pong follows its
        // ACK at once) is checked and stored first, and the ACK's signature is checked while that store syncs.
        const onAnswer = this.callback("answers", (msg) => this.answers.get(msg.subject)?.(msg));
        nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => void setImmediate(() => onAnswer(err, msg)) });
        for (const s of this.subs) s.sub = nc.subscribe(s.subject, { callback: this.callback(s.subject, s.handler) });
        log.info("connected to broker", { broker: nc.getServer() });
        this.setUp();
        void this.watch(nc);
        const err = await nc.closed();
        this.nc = undefined;
        if (this.closing) break;
        this.state = "down";
        log.warn("broker connection closed; connecting again", { reason: err?.message ?? "closed" });
      } catch (err) {
        const problem = await this.credentials.explain(err, tls);
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
        const problem = await this.credentials.explain(s.error);
        if (problem !== this.lastProblem) this.opts.log.warn("broker reported an error", { reason: problem });
        this.lastProblem = problem;
      }
    }
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

  /** Whatever a peer sends and whatever a handler does with it, the subscription and the link stay up. */
  private callback(subject: string, handler: (msg: Msg) => void): (err: Error | null, msg: Msg) => void {
    return (err, msg) => {
      if (err) {
        // A subscription the broker's permissions refuse: the node cannot hear what comes on it.
        void this.credentials
          .explain(err)
          .then((problem) => this.opts.log.error("cannot subscribe", { subject, reason: problem }));
        return;
      }
      try {
        handler(msg);
      } catch (err) {
        this.opts.log.error("could not handle a message from the broker", {
          subject: msg.subject,
          on: subject,
          reason: (err as Error).message,
        });
      }
    };
  }

  /** Subscribe now and after every new connection; returns what ends the subscription. */
  subscribe(subject: string, handler: (msg: Msg) => void): () => void {
    const entry: (typeof this.subs)[number] = { subject, handler };
    this.subs.push(entry);
    if (this.nc) entry.sub = this.nc.subscribe(subject, { callback: this.callback(subject, handler) });
    return () => {
      this.subs = this.subs.filter((s) => s !== entry);
      entry.sub?.unsubscribe();
    };
  }

  /** Largest payload the broker takes in one message. */
  get maxPayload(): number {
    return this.nc?.info?.max_payload ?? 1024 * 1024;
  }

  /**
   * Send and wait for an answer that `accept` takes (it returns what it makes of it), ignoring the others:
   * anyone who can read the request can answer on its inbox first, so the first answer is not the one.
   * Throws "timeout" when none was taken within `timeoutMs`, "no subscriber on …" at once when nobody listens,
   * "closing" when close() ends the wait.
   *
   * The answers come on this connection's own inbox (one subscription for all requests, as nats.js's own
   * request does), each request on a subject of its own below it.
   */
  request<T>(
    subject: string,
    data: Uint8Array,
    timeoutMs: number,
    accept: (answer: { subject: string; data: Uint8Array }) => T | undefined,
  ): Promise<T> {
    const nc = this.nc;
    if (!nc || this.state !== "up") return Promise.reject(new Error("not connected to the broker"));
    const replySubject = `${this.inbox}.${(++this.requests).toString(36)}`;
    return new Promise<T>((resolve, reject) => {
      const end = (err: Error | undefined, value?: T) => {
        clearTimeout(timer);
        this.answers.delete(replySubject);
        this.waiting.delete(end);
        if (err) reject(err);
        else resolve(value as T);
      };
      const timer = setTimeout(() => end(new Error("timeout")), timeoutMs);
      this.waiting.add(end);
      this.answers.set(replySubject, (msg) => {
        // The broker's own answer when no one subscribes to the subject (status 503, no data).
        if (msg.data.length === 0 && msg.headers?.code === 503) {
          end(new Error(`no subscriber on ${subject}`));
          return;
        }
        const taken = accept({ subject: msg.subject, data: msg.data });
        if (taken !== undefined) end(undefined, taken);
      });
      try {
        nc.publish(subject, data, { reply: replySubject });
      } catch (err) {
        end(err as Error);
      }
    });
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
    // Closed: no answer can come any more. What was sent is in the store, to go again at the next start.
    for (const end of [...this.waiting]) end(new Error("closing"));
    for (const w of this.upWaiters.splice(0)) w();
  }
}
