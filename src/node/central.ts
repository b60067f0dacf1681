/**
 * The messages a node sends central of its own accord: a hello now and then
 * (a heartbeat, so central knows who is there), and an error report for
 * central's error log when a message fails here.
 */
import type { Outbox } from "../delivery/outbox.js";
import { methodSubject } from "../delivery/subjects.js";
import type { Transport } from "../delivery/transport.js";
import type { Wire } from "../delivery/wire.js";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import { newEnvelope } from "../message/envelope.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { errorLine } from "../methods/errorLog.js";
import { now } from "../security/clock.js";
import type { Store } from "../store/store.js";
import { MAX_SECONDS } from "../timers.js";
import type { Config } from "./config.js";
import type { HelloData } from "./trustLink.js";

export interface CentralReportsOptions {
  config: Config;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  wire: Wire;
  log: Logger;
}

export class CentralReports {
  constructor(private readonly opts: CentralReportsOptions) {}

  /** Queue an error for central's error log: stored and re-sent like any message. */
  reportError(report: ErrorReport): void {
    const { config, store, outbox, log } = this.opts;
    // -1: keep re-sending until central has it; attempts only count while this node's link is up.
    const retries = config.errorMessageRetries < 0 ? MAX_SECONDS : config.errorMessageRetries;
    const message = this.toCentral("errorLog", {
      ACKTimeout: Math.max(1, config.errorMessageTimeout),
      retries,
      retryWait: 5,
      data: errorLine(report),
    });
    try {
      if (store.outgoing.add(message)) outbox.deliver({ envelope: message, attempt: 0 });
    } catch (err) {
      log.error("cannot queue an error for central", { reason: errorText(err), error: message.data });
    }
  }

  /** A hello is a heartbeat: published, never stored or retried (the next one follows). It carries this node's key. */
  sendHello(data: HelloData): void {
    const hello = this.toCentral("hello", { ACKTimeout: 0, retries: 0, attempt: 1, data: JSON.stringify(data) });
    const subject = methodSubject(this.opts.config.centralNodeName, "hello", this.opts.config.nodeName);
    this.opts.transport.publish(subject, this.opts.wire.seal(subject, hello));
  }

  /** A message of the node's own to central; it wants no reply. */
  private toCentral(method: "hello" | "errorLog", fields: Partial<Envelope>): Envelope {
    const { config } = this.opts;
    return newEnvelope({
      toNode: config.centralNodeName,
      fromNode: config.nodeName,
      method,
      methodTimeout: config.defaultMethodTimeout,
      deliverBy: now() + config.maxMessageAge * 1000,
      ...fields,
    });
  }
}
