/**
 * A running Steward node: wires the store, the broker link, the publisher
 * (outbox), the subscriber (inbox), the methods and the inputs.
 *
 *   starting ──▶ running ──close()──▶ closing ──▶ closed
 *
 * Inputs accept messages from the first moment, broker or not: an accepted
 * message is stored and waits in the outbox until the link is up.
 */
import { mkdirSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import type { Server } from "node:net";
import { resolve } from "node:path";
import { Inbox } from "../delivery/inbox.js";
import { Outbox } from "../delivery/outbox.js";
import { methodSubject, onlineSubject } from "../delivery/subjects.js";
import { parseAllowed } from "../delivery/subscribers.js";
import { Transport } from "../delivery/transport.js";
import { encode } from "../delivery/wire.js";
import { errorText, StoreError } from "../errors.js";
import { startHttpListener } from "../inputs/httpListener.js";
import type { AcceptAnswer } from "../inputs/protocol.js";
import { ReadFolderInput } from "../inputs/readFolder.js";
import { startSocketInput } from "../inputs/socket.js";
import { runStartupFolder } from "../inputs/startupFolder.js";
import { startTcpListener } from "../inputs/tcpListener.js";
import { createLogger, type Level, type Logger } from "../log.js";
import { newId } from "../message/id.js";
import { type Envelope, isFinal } from "../message/message.js";
import { METHOD_NAMES } from "../message/methods.js";
import { MAX_SECONDS, parseMessages } from "../message/parse.js";
import { errorLine } from "../methods/errorLog.js";
import { AuditLog } from "../observe/audit.js";
import { startDataFolderServer } from "../observe/dataFolderServer.js";
import { StewardMetrics } from "../observe/metrics.js";
import { startMetricsServer } from "../observe/metricsServer.js";
import { type OutgoingRecord, Store } from "../store/store.js";
import { type Config, socketPath, startSubKey } from "./config.js";

export type NodeLifecycle = "starting" | "running" | "closing" | "closed";

export class StewardNode {
  lifecycle: NodeLifecycle = "starting";
  readonly log: Logger;
  readonly store: Store;
  private transport: Transport;
  private outbox: Outbox;
  private inbox: Inbox;
  private readonly metrics: StewardMetrics;
  private readonly audit: AuditLog;
  /** The listening inputs: unix socket, TCP, HTTP. */
  private servers: (Server | HttpServer)[] = [];
  private readFolder: ReadFolderInput | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private linkTask: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Pending `wait` queries: each ends its wait when called. */
  private waits = new Set<() => void>();

  private constructor(
    readonly config: Config,
    log?: Logger,
  ) {
    this.log = log ?? createLogger(config.nodeName, config.logLevel as Level);
    this.store = new Store(config.databaseFolder, config.nodeName);
    this.metrics = new StewardMetrics({
      inFlight: () => this.outbox.inFlight,
      brokerConnected: () => this.transport.state === "up",
      lastHellos: () => this.store.nodes.list(),
    });
    this.audit = new AuditLog(config.auditLogFolder, config.auditLogMaxBytes, this.log);
    this.transport = new Transport({
      brokerAddress: config.brokerAddress,
      nodeName: config.nodeName,
      retryInterval: config.natsConnectRetryInterval,
      log: this.log,
      nkeySeedFile: config.nkeySeedFile,
      credsFile: config.natsCredsFile,
      rootCAPath: config.rootCAPath,
      tlsCertFile: config.tlsCertFile,
      tlsKeyFile: config.tlsKeyFile,
    });
    this.outbox = new Outbox(this.store, this.transport, this.log, {
      onSent: (env, attempt) => this.metrics.sent(env, attempt),
      onAcked: (env) => this.metrics.acked(env),
      onFailed: (env, reason) => {
        this.metrics.failed(env);
        // An error report that cannot be delivered is not reported again (no loops).
        if (env.method !== "errorLog")
          this.reportError({
            toNode: env.toNode,
            fromNode: this.config.nodeName,
            method: env.method,
            id: env.id,
            reason,
          });
      },
    });
    this.inbox = new Inbox({
      nodeName: config.nodeName,
      dataFolder: resolve(config.subscribersDataFolder),
      subscribers: Object.fromEntries(METHOD_NAMES.map((m) => [m, parseAllowed(config[startSubKey(m)] ?? "*")])),
      maxOutput: config.maxMessageSize,
      store: this.store,
      outbox: this.outbox,
      transport: this.transport,
      log: this.log,
      reportError: (e) => this.reportError(e),
      onHello: (node) => {
        this.store.nodes.recordHello(node);
        this.outbox.wake(node);
      },
      onExecuted: (env, output, error, rerun, durationMs) => {
        this.metrics.executed(env, durationMs);
        this.audit.executed(env, {
          exitCode: output.exitCode ?? (error ? null : 0),
          ...(error !== undefined && { error }),
          rerun,
          durationMs,
        });
      },
    });
  }

  static async start(config: Config, log?: Logger): Promise<StewardNode> {
    const node = new StewardNode(config, log);
    try {
      await node.startParts();
    } catch (err) {
      await node.close();
      throw err;
    }
    return node;
  }

  private async startParts(): Promise<void> {
    const c = this.config;
    mkdirSync(resolve(c.subscribersDataFolder), { recursive: true });
    this.inbox.start();
    this.transport.onUp(() => {
      // Tell every sender we are back so they flush to us now (DESIGN §3.3), then flush our own.
      this.transport.publish(onlineSubject(c.nodeName), encode({ node: c.nodeName }));
      this.sendHello();
      this.outbox.wake();
    });
    const maxBytes = Math.max(c.maxMessageSize, 1024 * 1024);
    const query = (command: string, args: string[]) => this.query(command, args);
    this.servers.push(
      await startSocketInput({ path: socketPath(c), acceptor: this, query, log: this.log, maxBytes, source: "socket" }),
    );
    if (c.tcpListener)
      this.servers.push(await startTcpListener(c.tcpListener, { acceptor: this, log: this.log, maxBytes }));
    if (c.httpListener)
      this.servers.push(await startHttpListener(c.httpListener, { acceptor: this, query, log: this.log, maxBytes }));
    if (c.promHostAndPort) this.servers.push(await startMetricsServer(c.promHostAndPort, this.metrics, this.log));
    if (c.exposeDataFolder)
      this.servers.push(await startDataFolderServer(c.exposeDataFolder, resolve(c.subscribersDataFolder), this.log));
    this.readFolder = new ReadFolderInput(resolve(c.readFolder), this, this.log, maxBytes);
    this.readFolder.start();
    const resent = this.outbox.resume();
    const startup = await runStartupFolder(resolve(c.startupFolder), this, this.log);
    const rerun = this.inbox.resume();
    this.linkTask = this.transport.run();
    if (c.startPubREQHello > 0) {
      this.helloTimer = setInterval(() => this.sendHello(), c.startPubREQHello * 1000);
      this.helloTimer.unref();
    }
    if (c.profilingPort) {
      this.log.warn("profilingPort is a setting of the Go seeds; this version serves no profiler there", {
        instead: "NODE_OPTIONS=--cpu-prof or --heap-prof when starting steward",
      });
    }
    this.lifecycle = "running";
    this.log.info("ready", {
      socket: socketPath(c),
      broker: c.brokerAddress,
      central: c.centralNodeName,
      store: this.store.path,
      resumedOutgoing: resent,
      resumedIncoming: rerun,
      startupMessages: startup,
      ...(c.tcpListener && { tcpListener: c.tcpListener }),
      ...(c.httpListener && { httpListener: c.httpListener }),
      ...(c.promHostAndPort && { promHostAndPort: c.promHostAndPort }),
      ...(c.exposeDataFolder && { exposeDataFolder: c.exposeDataFolder }),
    });
  }

  /** Parse, check and store every message of a document; answers once they are on disk (DESIGN §3.1). */
  async accept(text: string, source: string): Promise<AcceptAnswer[]> {
    const c = this.config;
    if (this.lifecycle === "closing" || this.lifecycle === "closed") {
      return [{ ok: false, error: "node is shutting down; send again once it has restarted" }];
    }
    const outcomes = parseMessages(text, {
      ACKTimeout: c.defaultMessageTimeout,
      retries: c.defaultMessageRetries,
      methodTimeout: c.defaultMethodTimeout,
    });
    // The whole document in one transaction: one disk sync for a fan-out to a thousand nodes.
    // Should that fail, each message is tried on its own so that each gets its own answer.
    const envs = outcomes.flatMap((o) =>
      "messages" in o ? o.messages.map((m): Envelope => ({ ...m, fromNode: c.nodeName, attempt: 0 })) : [],
    );
    let batch: boolean[] | undefined;
    try {
      batch = this.store.outgoing.addMany(envs);
    } catch (err) {
      this.log.warn("storing a batch failed; storing its messages one by one", { source, reason: errorText(err) });
    }
    const answers: AcceptAnswer[] = [];
    const fresh: Envelope[] = [];
    let next = 0;
    for (const outcome of outcomes) {
      if ("error" in outcome) {
        answers.push({
          ok: false,
          error: outcome.error.message,
          ...(outcome.index !== undefined && { index: outcome.index }),
        });
        this.log.warn("refused input", { source, reason: outcome.error.message });
        continue;
      }
      for (const _msg of outcome.messages) {
        const at = next++;
        const env = envs[at] as Envelope;
        let stored: boolean;
        try {
          stored = batch ? (batch[at] as boolean) : this.store.outgoing.add(env);
        } catch (err) {
          answers.push({
            ok: false,
            index: outcome.index,
            error: `message ${outcome.index}: not accepted, ${errorText(err)}`,
          });
          continue;
        }
        if (stored) fresh.push(env);
        answers.push({
          ok: true,
          id: env.id,
          toNode: env.toNode,
          method: env.method,
          ...(!stored && { duplicate: true }),
        });
      }
    }
    // "accepted" only once it is on disk; a duplicate's first copy may still be on its way there too.
    let unsynced: string | undefined;
    try {
      await this.store.durable();
    } catch (err) {
      if (err instanceof StoreError && err.lost) {
        // Rolled back (disk full at commit, say): none of them is stored.
        this.log.warn("messages not stored", { source, reason: errorText(err) });
        return answers.map((a) => (a.ok ? { ok: false, error: `message ${a.id} not accepted, ${errorText(err)}` } : a));
      }
      unsynced = errorText(err);
    }
    for (const env of fresh) {
      this.metrics.accepted(env);
      this.audit.accepted(env);
      // Stored either way: it is delivered, and `steward status` shows it, even when the sync failed.
      this.outbox.deliver({ envelope: env, attempt: 0 });
      this.log.debug("accepted", { id: env.id, toNode: env.toNode, method: env.method, source });
    }
    if (unsynced === undefined) return answers;
    this.log.error("accepted messages may not be on disk", { source, reason: unsynced });
    return answers.map((a) =>
      a.ok
        ? {
            ok: false,
            error: `message stored as ${a.id} but not confirmed on disk (${unsynced}); check "steward status ${a.id}" before sending it again`,
          }
        : a,
    );
  }

  /** Answers the CLI's questions over the socket. */
  query(command: string, args: string[]): unknown {
    switch (command) {
      case "wait": {
        const [ms = "", ...ids] = args;
        const limit = Number(ms);
        if (!Number.isInteger(limit) || limit < 0 || ids.length === 0)
          return { error: "wait needs MS ID...: the longest wait in milliseconds, then message ids" };
        const unknown = ids.find((id) => !this.store.outgoing.get(id));
        if (unknown) return { error: `no message with id ${unknown} was sent from ${this.config.nodeName}` };
        return this.waitFinal(ids, Math.min(limit, 60_000));
      }
      case "status": {
        const id = args[0] ?? "";
        const rec = this.store.outgoing.get(id);
        if (!rec) return { error: `no message with id ${id} was sent from ${this.config.nodeName}` };
        return { message: messageView(rec, true) };
      }
      case "list": {
        const limit = Number(args[0] ?? 50);
        return {
          messages: this.store.outgoing
            .list(Number.isInteger(limit) && limit > 0 ? limit : 50)
            .map((r) => messageView(r, false)),
        };
      }
      case "nodes":
        return { node: this.config.nodeName, central: this.config.centralNodeName, nodes: this.store.nodes.list() };
      case "health":
        return {
          node: this.config.nodeName,
          lifecycle: this.lifecycle,
          broker: this.transport.state,
          brokerAddress: this.config.brokerAddress,
          inFlight: this.outbox.inFlight,
        };
      default:
        return { error: `unknown query "${command}"; use status ID, list [LIMIT], wait MS ID..., nodes or health` };
    }
  }

  /**
   * The messages, in full, once every one of them is final (and that is on disk), or after `ms`
   * as they are then: the CLI's --wait learns of a result the moment it is stored, without polling.
   */
  private async waitFinal(ids: string[], ms: number): Promise<{ messages: Record<string, unknown>[] }> {
    const open = new Set(ids.filter((id) => !isFinal(this.store.outgoing.get(id)?.state ?? "queued")));
    if (open.size > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          stop();
          this.waits.delete(done);
          resolve();
        };
        this.waits.add(done); // a stopping node answers at once rather than hold its socket open
        const timer = setTimeout(done, ms);
        const stop = this.store.outgoing.onFinal((id) => {
          if (open.delete(id) && open.size === 0) done();
        });
      });
    }
    await this.store.durable().catch(() => undefined); // a final state is reported once it is stored for good
    return {
      messages: ids.map((id) => this.store.outgoing.get(id)).flatMap((rec) => (rec ? [messageView(rec, true)] : [])),
    };
  }

  /** Queue an error for central's error log (DESIGN §3.3). */
  reportError(e: { toNode: string; fromNode: string; method: string; id?: string; reason: string }): void {
    const c = this.config;
    // -1: keep re-sending until central has it; attempts only count while this node's link is up.
    const retries = c.errorMessageRetries < 0 ? MAX_SECONDS : c.errorMessageRetries;
    const env = this.toCentral("errorLog", {
      ACKTimeout: Math.max(1, c.errorMessageTimeout),
      retries,
      retryWait: 5,
      data: errorLine(e),
    });
    try {
      if (this.store.outgoing.add(env)) this.outbox.deliver({ envelope: env, attempt: 0 });
    } catch (err) {
      this.log.error("cannot queue an error for central", { reason: errorText(err), error: env.data });
    }
  }

  /** A hello is a heartbeat: published, never stored or retried (the next one follows). */
  private sendHello(): void {
    const hello = this.toCentral("hello", { ACKTimeout: 0, retries: 0, attempt: 1 });
    this.transport.publish(methodSubject(this.config.centralNodeName, "hello"), encode(hello));
  }

  /** A message of the node's own (hello, errorLog) to central; it wants no reply. */
  private toCentral(method: "hello" | "errorLog", fields: Partial<Envelope>): Envelope {
    const c = this.config;
    return {
      id: newId(),
      toNode: c.centralNodeName,
      fromNode: c.nodeName,
      method,
      methodArgs: [],
      replyMethod: "none",
      replyMethodArgs: [],
      ACKTimeout: 0,
      retries: 0,
      retryWait: 0,
      replyACKTimeout: 0,
      replyRetries: 0,
      methodTimeout: c.defaultMethodTimeout,
      replyMethodTimeout: c.defaultMethodTimeout,
      attempt: 0,
      ...fields,
    };
  }

  /** Stop everything; unfinished messages stay in the store and resume at the next start. Same promise when called twice. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.lifecycle = "closing";
    const step = async (name: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        this.log.warn(`shutdown: ${name} failed`, { reason: errorText(err) });
      }
    };
    if (this.helloTimer) clearInterval(this.helloTimer);
    await step("read folder", () => this.readFolder?.close());
    for (const answerNow of [...this.waits]) answerNow();
    await step("listeners", () => Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r())))));
    await step("inbox", () => this.inbox.close());
    const outboxDone = this.outbox.close();
    await step("broker link", () => this.transport.close());
    await step("outbox", () => outboxDone);
    await step("broker link task", () => this.linkTask);
    await step("store", () => this.store.close());
    this.lifecycle = "closed";
    this.log.info("stopped");
  }
}

/** A message as the CLI and other clients see it. */
export function messageView(rec: OutgoingRecord, withResult: boolean): Record<string, unknown> {
  const r = rec.result;
  return {
    id: rec.id,
    toNode: rec.toNode,
    method: rec.method,
    state: rec.state,
    attempt: rec.attempt,
    reason: rec.reason,
    exitCode: rec.exitCode,
    createdAt: new Date(rec.createdAt).toISOString(),
    updatedAt: new Date(rec.updatedAt).toISOString(),
    ...(r?.rerun && { rerun: true }),
    // Streamed and scheduled results come back in parts; the latest part's number shows progress.
    ...(rec.state === "running" && r?.seq && { parts: r.seq }),
    ...(withResult && r && { result: r }),
  };
}
