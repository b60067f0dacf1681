/**
 * A running Steward node: wires the store, the broker link, the publisher
 * (outbox), the subscriber (inbox), the methods and the inputs, and runs its
 * lifecycle (each state is described at NodeLifecycle in src/inputs/queries.ts):
 *
 *   starting ──▶ running ──close()──▶ closing ──▶ closed
 *
 * Inputs accept messages from the first moment, broker or not: an accepted
 * message is stored and waits in the outbox until the link is up. Taking
 * messages in is accept.ts; answering queries, queries.ts; the node's own
 * messages to central, central.ts.
 */
import { chmodSync, mkdirSync, statSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import type { Server } from "node:net";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { Batches } from "../delivery/batch.js";
import { Inbox } from "../delivery/inbox.js";
import { Outbox } from "../delivery/outbox.js";
import { Rejects } from "../delivery/rejects.js";
import { parseAllowed } from "../delivery/subscribers.js";
import { Transport } from "../delivery/transport.js";
import { TwoBrokers } from "../delivery/twoBrokers.js";
import { Wire } from "../delivery/wire.js";
import { errorText } from "../errors.js";
import { startHttpListener } from "../inputs/httpListener.js";
import type { AcceptAnswer } from "../inputs/protocol.js";
import type { Health, NodeLifecycle } from "../inputs/queries.js";
import { ReadFolderInput } from "../inputs/readFolder.js";
import { groupId, startSocketInput } from "../inputs/socket.js";
import { runStartupFolder } from "../inputs/startupFolder.js";
import { startTcpListener } from "../inputs/tcpListener.js";
import { loadOrCreateListenerToken } from "../inputs/token.js";
import { createLogger, type Level, type Logger } from "../log.js";
import { parseLabelList } from "../message/labels.js";
import type { ErrorReport } from "../message/message.js";
import { METHOD_NAMES, methodSpec } from "../message/methods.js";
import { AuditLog } from "../observe/audit.js";
import { startDataFolderServer } from "../observe/dataFolderServer.js";
import { StewardMetrics } from "../observe/metrics.js";
import { startMetricsServer } from "../observe/metricsServer.js";
import { KEY_FILE, loadOrCreateIdentity } from "../security/identity.js";
import { Trust } from "../security/trust.js";
import { Store } from "../store/store.js";
import { makeFilesPrivate } from "../umask.js";
import { AcceptPipeline } from "./accept.js";
import { Admission } from "./admission.js";
import { CentralReports } from "./central.js";
import { type Config, socketPath, startSubKey } from "./config.js";
import { NodeQueries } from "./queries.js";
import { TrustLink } from "./trustLink.js";

export class StewardNode {
  lifecycle: NodeLifecycle = "starting";
  readonly log: Logger;
  readonly store: Store;
  /** The answers to the queries the socket and the HTTP listener serve. */
  readonly queries: NodeQueries;
  private transport: Transport;
  private outbox: Outbox;
  private readonly batches: Batches;
  private inbox: Inbox;
  private readonly metrics: StewardMetrics;
  private readonly audit: AuditLog;
  private readonly acceptance: AcceptPipeline;
  private readonly central: CentralReports;
  /** Keys, central's bundle, the rules. */
  readonly trust: Trust;
  private readonly wire: Wire;
  private readonly trustLink: TrustLink;
  /** Central only: the registry of node keys. */
  readonly admission: Admission | undefined;
  /** The listening inputs: unix socket, TCP, HTTP. */
  private servers: (Server | HttpServer)[] = [];
  private readFolder: ReadFolderInput | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private linkTask: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    log?: Logger,
  ) {
    this.log = log ?? createLogger(config.nodeName, config.logLevel as Level);
    this.store = new Store(config.databaseFolder, config.nodeName);
    this.metrics = new StewardMetrics({
      inFlight: () => this.outbox.inFlight,
      brokerConnected: () => this.transport.state === "up",
      lastHellos: () => this.store.nodes.hellos(),
    });
    this.audit = new AuditLog(config.auditLogFolder, config.auditLogMaxBytes, this.log);
    const { identity, created } = loadOrCreateIdentity(resolve(config.configFolder), config.nodeName);
    if (created)
      this.log.info("created this node's key pair", {
        file: resolve(config.configFolder, KEY_FILE),
        publicKey: identity.publicKey,
      });
    this.trust = new Trust({
      identity,
      configFolder: resolve(config.configFolder),
      centralNodeName: config.centralNodeName,
      centralPublicKey: config.centralPublicKey,
      pinCentralKey: config.pinCentralKey === 1,
      log: this.log,
    });
    const rejects = new Rejects({
      nodeName: config.nodeName,
      log: this.log,
      count: (reason) => this.metrics.dropped(reason),
      reportError: (e) => this.reportError(e),
    });
    this.wire = new Wire(this.trust, rejects);
    const link = {
      brokerAddress: config.brokerAddress,
      nodeName: config.nodeName,
      retryInterval: config.natsConnectRetryInterval,
      log: this.log,
      nkeySeedFile: config.nkeySeedFile,
      credsFile: config.natsCredsFile,
      rootCAPath: config.rootCAPath,
      tlsCertFile: config.tlsCertFile,
      tlsKeyFile: config.tlsKeyFile,
    };
    // A relay node joins a second broker too, and carries messages between the two (src/delivery/relay.ts).
    this.transport = config.relayBrokerAddress
      ? new TwoBrokers(
          link,
          new Transport({
            ...link,
            brokerAddress: config.relayBrokerAddress,
            nkeySeedFile: config.relayNkeySeedFile,
            credsFile: config.relayNatsCredsFile,
          }),
        )
      : new Transport(link);
    this.trustLink = new TrustLink({
      trust: this.trust,
      wire: this.wire,
      rejects,
      transport: this.transport,
      log: this.log,
      labels: parseLabelList(config.labels),
    });
    this.admission = this.trust.isCentral
      ? new Admission({
          trust: this.trust,
          store: this.store,
          transport: this.transport,
          autoApprove: config.autoApproveKeys === 1,
          labels: parseLabelList(config.labels),
          log: this.log,
        })
      : undefined;
    this.outbox = new Outbox(
      this.store,
      this.transport,
      this.wire,
      this.log,
      {
        onSent: (message, attempt) => this.metrics.sent(message, attempt),
        onAcked: (message) => {
          this.metrics.acked(message);
          this.inbox.relay.carried(message);
        },
        onFailed: (message, reason) => {
          this.metrics.failed(message);
          this.inbox.relay.carried(message, reason);
          // An error report that cannot be delivered is not reported again (no loops).
          if (!methodSpec(message.method)?.errorReport)
            this.reportError({
              toNode: message.toNode,
              fromNode: this.config.nodeName,
              method: message.method,
              id: message.id,
              reason,
            });
        },
      },
      config.maxMessageAge,
      config.maxMessageSize,
    );
    this.batches = new Batches(this.store, this.outbox, this.log);
    this.central = new CentralReports({
      config,
      store: this.store,
      outbox: this.outbox,
      transport: this.transport,
      wire: this.wire,
      log: this.log,
      onDropped: () => this.metrics.errorReportDropped(),
    });
    this.inbox = new Inbox({
      nodeName: config.nodeName,
      centralNodeName: config.centralNodeName,
      // Runs mostly wait on processes, not on this node's CPU: a few per core keep it busy without
      // letting a flood start processes without end.
      maxConcurrentRuns: config.maxConcurrentRuns || Math.max(4, 4 * availableParallelism()),
      stopGracePeriod: config.stopGracePeriod,
      maxMethodTimeout: config.maxMethodTimeout,
      maxMessagesPerSender: config.maxMessagesPerSender,
      maxMessagesPerSenderBurst: config.maxMessagesPerSenderBurst,
      onBusy: (signer) => this.metrics.busy(signer),
      dataFolder: resolve(config.subscribersDataFolder),
      allowedNodes: Object.fromEntries(METHOD_NAMES.map((m) => [m, parseAllowed(config[startSubKey(m)] ?? "*")])),
      maxOutput: config.maxMessageSize,
      chunkFolder: join(resolve(config.databaseFolder), "chunks"),
      store: this.store,
      outbox: this.outbox,
      transport: this.transport,
      wire: this.wire,
      maxMessageAge: config.maxMessageAge,
      log: this.log,
      reportError: (e) => this.reportError(e),
      onHello: (subject, bytes) => {
        const hello = this.trustLink.checkHello(subject, bytes);
        if (!hello) return undefined;
        this.admission?.hello(hello);
        if (hello.fresh && this.trust.admitted(hello.node)) {
          this.store.nodes.recordHello(hello.node);
          this.outbox.wake(hello.node);
        }
        return hello.id;
      },
      onRefused: (message, signer, reason) => {
        this.metrics.refused(String(message.method ?? "?"), signer);
        this.audit.refused(message, signer, reason);
      },
      onExecuted: (message, output, error, rerun, durationMs) => {
        this.metrics.executed(message, durationMs);
        this.audit.executed(message, {
          exitCode: output.exitCode ?? (error ? null : 0),
          ...(error !== undefined && { error }),
          rerun,
          durationMs,
        });
      },
    });
    this.acceptance = new AcceptPipeline({
      config,
      store: this.store,
      outbox: this.outbox,
      batches: this.batches,
      metrics: this.metrics,
      audit: this.audit,
      log: this.log,
      nodesWithLabels: (labels) => this.trust.nodesWithLabels(labels),
      refusing: () => this.lifecycle === "closing" || this.lifecycle === "closed",
    });
    this.queries = new NodeQueries({
      nodeName: config.nodeName,
      centralNodeName: config.centralNodeName,
      store: this.store,
      admission: this.admission,
      bundleVersion: () => this.trust.version,
      labelsOf: (name) => this.trust.member(name).labels,
      admittedNodes: () => this.trust.admittedNames(),
      health: () => this.health(),
      cancelMessage: (rec, by) => this.outbox.cancel(rec, by),
    });
  }

  static async start(config: Config, log?: Logger): Promise<StewardNode> {
    // Everything the node writes (store, results, logs, audit log, keys, the socket) is its user's alone.
    makeFilesPrivate();
    const node = new StewardNode(config, log);
    node.tightenFiles();
    try {
      await node.startParts();
    } catch (err) {
      await node.close();
      throw err;
    }
    return node;
  }

  /** Files an older version left readable by others (written before it set umask 077) are made private. */
  private tightenFiles(): void {
    const store = this.store.path;
    const files = [resolve(this.config.configFolder, "config.json"), store, `${store}-wal`, `${store}-shm`];
    if (this.audit.path) files.push(this.audit.path, ...[1, 2, 3, 4, 5].map((i) => `${this.audit.path}.${i}`));
    for (const file of files) {
      try {
        const mode = statSync(file).mode & 0o777;
        if (mode & 0o077) chmodSync(file, mode & 0o700);
      } catch {
        // Not there (yet): made private when it is created.
      }
    }
  }

  private async startParts(): Promise<void> {
    const config = this.config;
    mkdirSync(resolve(config.subscribersDataFolder), { recursive: true });
    this.inbox.start();
    this.trustLink.start();
    let lastNudge = 0;
    this.trust.onBundle((bundle) => {
      this.inbox.recheck();
      // Messages to nodes this bundle admits, whose ACKs could not be checked until now, go at once.
      this.outbox.wake();
      // A bundle that does not list this node yet: central may have missed its first hello; say it again now
      // (once in a while: while a fleet starts, bundles come often).
      if (!bundle.nodes[config.nodeName] && Date.now() - lastNudge > 5000) {
        lastNudge = Date.now();
        this.central.sendHello(this.trustLink.helloData());
      }
    });
    this.admission?.start();
    this.transport.onUp(() => {
      // Tell every sender we are back so they flush to us now, then flush our own.
      this.trustLink.announce();
      this.admission?.broadcast();
      this.central.sendHello(this.trustLink.helloData());
      this.outbox.wake();
    });
    const maxBytes = config.maxInputBytes;
    const maxConnections = config.maxInputConnections;
    const { acceptance: acceptor, queries, log } = this;
    const group = config.socketGroup ? groupId(config.socketGroup) : undefined;
    this.servers.push(
      await startSocketInput({
        path: socketPath(config),
        acceptor,
        queries,
        log,
        maxBytes,
        maxConnections,
        group,
        source: "socket",
      }),
    );
    if (config.tcpListener || config.httpListener) {
      const { token, path, created } = loadOrCreateListenerToken(resolve(config.configFolder));
      if (created) log.info("created the token of the TCP and HTTP listeners", { file: path });
      if (config.tcpListener)
        this.servers.push(
          await startTcpListener(config.tcpListener, { acceptor, log, maxBytes, maxConnections, token }),
        );
      if (config.httpListener) {
        const hostNames = config.httpListenerHosts
          .split(",")
          .map((h) => h.trim())
          .filter(Boolean);
        this.servers.push(
          await startHttpListener(config.httpListener, {
            acceptor,
            queries,
            log,
            maxBytes,
            maxConnections,
            token,
            hostNames,
          }),
        );
      }
    }
    if (config.promHostAndPort)
      this.servers.push(await startMetricsServer(config.promHostAndPort, this.metrics, this.log));
    if (config.exposeDataFolder)
      this.servers.push(
        await startDataFolderServer(config.exposeDataFolder, resolve(config.subscribersDataFolder), this.log),
      );
    this.readFolder = new ReadFolderInput(resolve(config.readFolder), acceptor, this.log, maxBytes);
    this.readFolder.start();
    const resent = this.outbox.resume();
    const rollouts = this.batches.resume();
    const startup = await runStartupFolder(resolve(config.startupFolder), acceptor, this.log);
    const rerun = this.inbox.resume();
    this.linkTask = this.transport.run();
    if (config.startPubREQHello > 0) {
      this.helloTimer = setInterval(
        () => this.central.sendHello(this.trustLink.helloData()),
        config.startPubREQHello * 1000,
      );
      this.helloTimer.unref();
    }
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), config.pruneInterval * 1000);
    this.pruneTimer.unref();
    if (config.profilingPort) {
      this.log.warn("profilingPort is a setting of the Go seeds; this version serves no profiler there", {
        instead: "NODE_OPTIONS=--cpu-prof or --heap-prof when starting steward",
      });
    }
    if (!this.trust.hasCentralKey)
      this.log.warn(
        config.pinCentralKey === 1
          ? `central's key is not known yet: it will be pinned from the first bundle ${config.centralNodeName} sends`
          : "central's key is not known and pinCentralKey is 0: set centralPublicKey, or this node trusts no one",
      );
    this.lifecycle = "running";
    this.log.info("ready", {
      publicKey: this.trust.identity.publicKey,
      bundle: this.trust.version,
      socket: socketPath(config),
      broker: config.brokerAddress,
      central: config.centralNodeName,
      store: this.store.path,
      resumedOutgoing: resent,
      resumedIncoming: rerun,
      ...(rollouts > 0 && { batchRollouts: rollouts }),
      startupMessages: startup,
      ...(config.tcpListener && { tcpListener: config.tcpListener }),
      ...(config.httpListener && { httpListener: config.httpListener }),
      ...(config.promHostAndPort && { promHostAndPort: config.promHostAndPort }),
      ...(config.exposeDataFolder && { exposeDataFolder: config.exposeDataFolder }),
    });
  }

  /** Parse, check and store every message of a document; answers once they are on disk. */
  accept(text: string, source: string): Promise<AcceptAnswer[]> {
    return this.acceptance.accept(text, source);
  }

  /** Queue an error for central's error log. */
  reportError(report: ErrorReport): void {
    this.central.reportError(report);
  }

  /** Delete what retention no longer keeps (src/store/retention.ts); runs in the background, in small batches. */
  private prune(): void {
    this.store.prune(this.config.retention * 1000).then(
      (pruned) => {
        this.metrics.pruned({ ...pruned });
        if (pruned.outbox + pruned.inbox + pruned.dedupe + pruned.keys + pruned.batches > 0)
          this.log.debug("pruned the store", { ...pruned });
      },
      (err: unknown) => this.log.error("cannot prune the store", { reason: errorText(err) }),
    );
  }

  /** How the node is, as the `health` query answers it. */
  health(): Health {
    return {
      node: this.config.nodeName,
      lifecycle: this.lifecycle,
      broker: this.transport.state,
      brokerAddress: this.config.brokerAddress,
      inFlight: this.outbox.inFlight,
      bundle: this.trust.version,
    };
  }

  /**
   * Stop everything. Inputs close first; runs in progress get stopGracePeriod to finish while the broker link
   * still carries their replies (src/delivery/runner.ts); unfinished messages stay in the store and resume
   * at the next start. Same promise when called twice.
   */
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
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.admission?.close();
    await step("read folder", () => this.readFolder?.close());
    this.queries.endWaits();
    await step("listeners", () => Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r())))));
    await step("inbox", () => this.inbox.close());
    this.batches.stop();
    const outboxDone = this.outbox.close();
    await step("broker link", () => this.transport.close());
    await step("outbox", () => outboxDone);
    await step("broker link task", () => this.linkTask);
    await step("error reports", () => this.central.close());
    await step("store", () => this.store.close());
    this.lifecycle = "closed";
    this.log.info("stopped");
  }
}
