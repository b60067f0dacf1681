/**
 * The messages a node sends central of its own accord: a hello now and then
 * (a heartbeat, so central knows who is there), and an error report for
 * central's error log when a message fails here.
 *
 * Error reports are bounded, so that a flood of failures, or central being
 * away, costs this node a fixed amount:
 *
 *   coalesced  the first of a kind goes at once; the same error again (same nodes and method, same text
 *              once ids and numbers are left out) within errorReportWindow is only counted; when the
 *              window ends the latest goes, saying "(and N more like this in the last minute)"
 *   bounded    at most maxErrorReportsWaiting wait for central; a newer one drops the oldest (counted, and
 *              logged once a window)
 *   finite     each may wait errorReportMaxAge at most (its deliverBy); then it expires undelivered
 */
import type { Outbox } from "../delivery/outbox.js";
import { methodSubject } from "../delivery/subjects.js";
import type { Transport } from "../delivery/transport.js";
import type { Wire } from "../delivery/wire.js";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import { newEnvelope } from "../message/envelope.js";
import type { Envelope, ErrorReport } from "../message/message.js";
import { methodSpec } from "../message/methods.js";
import { errorLine } from "../methods/errorLog.js";
import { now } from "../security/clock.js";
import type { Store } from "../store/store.js";
import type { Config } from "./config.js";
import type { HelloData } from "./trustLink.js";

export interface CentralReportsOptions {
  config: Config;
  store: Store;
  outbox: Outbox;
  transport: Transport;
  wire: Wire;
  log: Logger;
  /** An error report waiting for central was dropped to keep maxErrorReportsWaiting: metrics. */
  onDropped?(): void;
}

/** Seconds between two re-sends of an error report. */
const REPORT_RETRY_WAIT = 5;

/** Most kinds of error counted at once; past it, a new kind is reported without being counted. */
const MAX_KINDS = 1000;

/** A kind of error seen in this window: how many more came after the first, and the latest. */
interface Similar {
  since: number;
  more: number;
  latest: ErrorReport;
}

export class CentralReports {
  private readonly similar = new Map<string, Similar>();
  private windowTimer: NodeJS.Timeout | undefined;
  /** The error reports stored and not yet delivered (or given up), oldest first. */
  private readonly waiting = new Set<string>();
  private droppedSinceLine = 0;
  private lastDropLine = 0;

  constructor(private readonly opts: CentralReportsOptions) {
    // Reports the last run left waiting count against the bound too.
    for (const rec of opts.store.outgoing.pending()) if (methodSpec(rec.method)?.errorReport) this.waiting.add(rec.id);
    opts.store.outgoing.onFinal((id) => this.waiting.delete(id));
  }

  /** An error for central's error log: sent at once unless the same one went this window (then counted). */
  reportError(report: ErrorReport): void {
    const key = similarKey(report);
    const seen = this.similar.get(key);
    if (seen) {
      seen.more++;
      seen.latest = report;
      return;
    }
    if (this.similar.size < MAX_KINDS) {
      this.similar.set(key, { since: Date.now(), more: 0, latest: report });
      this.scheduleWindowEnd();
    }
    this.queue(report);
  }

  /** Send what the open windows counted now (the node stops); they are delivered at the next start if need be. */
  close(): void {
    clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    this.endWindows(Number.POSITIVE_INFINITY);
  }

  /** One timer for all windows: the oldest window ends first (the map keeps them in the order they began). */
  private scheduleWindowEnd(): void {
    if (this.windowTimer) return;
    const first = this.similar.values().next().value;
    if (!first) return;
    const windowMs = this.opts.config.errorReportWindow * 1000;
    this.windowTimer = setTimeout(
      () => {
        this.windowTimer = undefined;
        this.endWindows(Date.now());
        this.scheduleWindowEnd();
      },
      Math.max(0, first.since + windowMs - Date.now()),
    );
    this.windowTimer.unref();
  }

  /** Every window that began `windowMs` before `now` ends: one report for each that counted more. */
  private endWindows(now: number): void {
    const windowMs = this.opts.config.errorReportWindow * 1000;
    for (const [key, s] of this.similar) {
      if (s.since + windowMs > now) break;
      this.similar.delete(key);
      // The latest of them, saying how many more came besides it and the first.
      if (s.more === 1) this.queue(s.latest);
      else if (s.more > 1)
        this.queue({
          ...s.latest,
          reason: `${s.latest.reason} (and ${s.more - 1} more like this in the last ${windowText(this.opts.config.errorReportWindow)})`,
        });
    }
  }

  /** Store a report for central and deliver it like any message, within its deadline and the bound. */
  private queue(report: ErrorReport): void {
    const { config, store, outbox, log } = this.opts;
    const maxAge = Math.min(config.maxMessageAge, config.errorReportMaxAge);
    const ACKTimeout = Math.max(1, config.errorMessageTimeout);
    // -1: until central has it, or until its deadline: as many attempts as fit in errorReportMaxAge.
    const retries =
      config.errorMessageRetries < 0
        ? Math.ceil(maxAge / (ACKTimeout + REPORT_RETRY_WAIT))
        : config.errorMessageRetries;
    const message = this.toCentral("errorLog", {
      ACKTimeout,
      retries,
      retryWait: REPORT_RETRY_WAIT,
      deliverBy: now() + maxAge * 1000,
      // Appending a line needs no unlimited run, which central would refuse from this node anyway.
      methodTimeout: config.defaultMethodTimeout < 0 ? 10 : config.defaultMethodTimeout,
      data: errorLine(report),
    });
    try {
      if (!store.outgoing.add(message)) return;
      this.waiting.add(message.id);
      this.dropOldest();
      outbox.deliver({ envelope: message, attempt: 0 });
    } catch (err) {
      log.error("cannot queue an error for central", { reason: errorText(err), error: message.data });
    }
  }

  /** Keep at most maxErrorReportsWaiting: the oldest go first, counted, with a log line once a window. */
  private dropOldest(): void {
    const { config, store, log } = this.opts;
    const max = config.maxErrorReportsWaiting;
    while (this.waiting.size > max) {
      const oldest = this.waiting.values().next().value as string;
      this.waiting.delete(oldest);
      store.outgoing.moveToFinal(oldest, "failed", {
        reason: `dropped: more than ${max} error reports were waiting for central (maxErrorReportsWaiting)`,
      });
      // Its delivery task stops now, not after its next wait: dropped reports leave no timers behind.
      this.opts.outbox.stop(oldest);
      this.droppedSinceLine++;
      this.opts.onDropped?.();
    }
    if (this.droppedSinceLine > 0 && Date.now() - this.lastDropLine >= config.errorReportWindow * 1000) {
      log.warn("error reports waiting for central are too many: dropped the oldest", {
        dropped: this.droppedSinceLine,
        maxErrorReportsWaiting: max,
      });
      this.droppedSinceLine = 0;
      this.lastDropLine = Date.now();
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

/** Errors of one kind: the same nodes and method, and the same text once every word with a digit (ids, counts, times) is left out. */
function similarKey(r: ErrorReport): string {
  return [r.toNode, r.fromNode, r.method, r.reason.replace(/\S*\d\S*/g, "#")].join("\u0000");
}

function windowText(seconds: number): string {
  return seconds === 60 ? "minute" : `${seconds} s`;
}
