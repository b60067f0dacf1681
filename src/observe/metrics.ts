/**
 * Prometheus metrics: a small registry of counters, gauges and histograms
 * with labels, written out in the text exposition format (version 0.0.4),
 * and the set of metrics a Steward node keeps (StewardMetrics).
 *
 * Counters and histograms are updated as things happen; gauges that mirror
 * state held elsewhere (in flight, broker link, last hellos) are read at
 * scrape time, so they can never drift from the truth.
 */
import type { Envelope } from "../message/message.js";

export type Labels = Record<string, string>;

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  /** The sample lines (without HELP/TYPE). */
  samples(): string[];
}

/** Values in a map keyed by the label values, in the order of the metric's label names. */
abstract class Labelled<V> {
  protected values = new Map<string, { labels: Labels; value: V }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected entry(labels: Labels, init: () => V): { labels: Labels; value: V } {
    const key = this.labelNames.map((n) => labels[n] ?? "").join("\u0000");
    let e = this.values.get(key);
    if (!e) {
      e = { labels: Object.fromEntries(this.labelNames.map((n) => [n, labels[n] ?? ""])), value: init() };
      this.values.set(key, e);
    }
    return e;
  }
}

export class Counter extends Labelled<number> implements Metric {
  readonly type = "counter";
  inc(labels: Labels = {}, by = 1): void {
    this.entry(labels, () => 0).value += by;
  }
  get(labels: Labels = {}): number {
    return this.entry(labels, () => 0).value;
  }
  samples(): string[] {
    return [...this.values.values()].map((e) => sample(this.name, e.labels, e.value));
  }
}

/** A gauge whose samples are read when scraped. */
export class Gauge implements Metric {
  readonly type = "gauge";
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly collect: () => { labels?: Labels; value: number }[],
  ) {}
  samples(): string[] {
    return this.collect().map((s) => sample(this.name, s.labels ?? {}, s.value));
  }
}

/** Bucket bounds in seconds: from a quick ping to a long command. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

export class Histogram extends Labelled<{ counts: number[]; sum: number; count: number }> implements Metric {
  readonly type = "histogram";
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly buckets: readonly number[] = DURATION_BUCKETS,
  ) {
    super(name, help, labelNames);
  }
  observe(labels: Labels, value: number): void {
    const v = this.entry(labels, () => ({ counts: this.buckets.map(() => 0), sum: 0, count: 0 })).value;
    this.buckets.forEach((le, i) => {
      if (value <= le) v.counts[i] = (v.counts[i] ?? 0) + 1;
    });
    v.sum += value;
    v.count++;
  }
  samples(): string[] {
    const out: string[] = [];
    for (const { labels, value } of this.values.values()) {
      this.buckets.forEach((le, i) =>
        out.push(sample(`${this.name}_bucket`, { ...labels, le: num(le) }, value.counts[i] ?? 0)),
      );
      out.push(sample(`${this.name}_bucket`, { ...labels, le: "+Inf" }, value.count));
      out.push(sample(`${this.name}_sum`, labels, value.sum));
      out.push(sample(`${this.name}_count`, labels, value.count));
    }
    return out;
  }
}

export class Registry {
  private metrics: Metric[] = [];

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, collect: () => { labels?: Labels; value: number }[]): Gauge {
    return this.add(new Gauge(name, help, collect));
  }
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets?: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  /** Every metric in the Prometheus text format. */
  text(): string {
    const lines: string[] = [];
    for (const m of this.metrics) {
      lines.push(
        `# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`,
        `# TYPE ${m.name} ${m.type}`,
        ...m.samples(),
      );
    }
    return `${lines.join("\n")}\n`;
  }

  private add<M extends Metric>(m: M): M {
    if (this.metrics.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.metrics.push(m);
    return m;
  }
}

function sample(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
  );
  return `${name}${pairs.length > 0 ? `{${pairs.join(",")}}` : ""} ${num(value)}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** What the metrics read from the running node at scrape time. */
export interface NodeState {
  inFlight(): number;
  brokerConnected(): boolean;
  /** Nodes and when their last hello arrived (ms since epoch; null = never). */
  lastHellos(): { name: string; lastSeen: number | null }[];
}

/** The metrics of one Steward node. */
export class StewardMetrics {
  readonly registry = new Registry();
  private readonly acceptedTotal: Counter;
  private readonly sentTotal: Counter;
  private readonly ackedTotal: Counter;
  private readonly failedTotal: Counter;
  private readonly retriedTotal: Counter;
  private readonly executedTotal: Counter;
  private readonly droppedTotal: Counter;
  private readonly refusedTotal: Counter;
  private readonly busyTotal: Counter;
  private readonly errorReportsDroppedTotal: Counter;
  private readonly duration: Histogram;
  private readonly prunedTotal: Counter;

  constructor(state: NodeState) {
    const r = this.registry;
    const out = ["method", "to_node"] as const;
    this.acceptedTotal = r.counter(
      "steward_messages_accepted_total",
      "Messages accepted at this node's inputs and stored.",
      out,
    );
    this.sentTotal = r.counter(
      "steward_messages_sent_total",
      "Send attempts of messages from this node's outbox (each attempt counts).",
      out,
    );
    this.ackedTotal = r.counter(
      "steward_messages_acked_total",
      "Messages from this node's outbox ACKed by their receiver.",
      out,
    );
    this.failedTotal = r.counter(
      "steward_messages_failed_total",
      "Messages from this node's outbox that failed (retries spent, or refused).",
      out,
    );
    this.retriedTotal = r.counter(
      "steward_messages_retried_total",
      "Re-sends (attempts after the first) from this node's outbox.",
      out,
    );
    this.executedTotal = r.counter(
      "steward_messages_executed_total",
      "Messages whose method ran on this node (replies not counted).",
      ["method", "from_node"],
    );
    this.droppedTotal = r.counter(
      "steward_unverified_dropped_total",
      "Frames from the broker dropped unanswered because they failed verification (unsigned, unknown signer, bad signature, wrong signer…).",
      ["reason"],
    );
    this.refusedTotal = r.counter(
      "steward_messages_refused_total",
      "Messages from verified senders refused here (not allowed, expired, bad fields…).",
      ["method", "from_node"],
    );
    this.busyTotal = r.counter(
      "steward_messages_busy_total",
      "Messages not stored here because their sender was over maxMessagesPerSender (answered busy: it re-sends later).",
      ["from_node"],
    );
    this.errorReportsDroppedTotal = r.counter(
      "steward_error_reports_dropped_total",
      "Error reports for central dropped undelivered because more than maxErrorReportsWaiting were waiting.",
      [],
    );
    this.duration = r.histogram("steward_method_duration_seconds", "How long methods ran on this node, in seconds.", [
      "method",
    ]);
    this.prunedTotal = r.counter(
      "steward_store_pruned_total",
      "Rows deleted from this node's store by retention (finished messages, old dedupe records, keys never approved).",
      ["table"],
    );
    r.gauge("steward_messages_in_flight", "Messages this node is delivering now (queued or awaiting an ACK).", () => [
      { value: state.inFlight() },
    ]);
    r.gauge("steward_broker_connected", "1 when this node's link to the broker is up, else 0.", () => [
      { value: state.brokerConnected() ? 1 : 0 },
    ]);
    r.gauge(
      "steward_node_last_hello_timestamp_seconds",
      "When each node's last hello arrived here (unix seconds).",
      () =>
        state
          .lastHellos()
          .filter((n) => n.lastSeen !== null)
          .map((n) => ({ labels: { node: n.name }, value: (n.lastSeen as number) / 1000 })),
    );
  }

  accepted(message: Envelope): void {
    this.acceptedTotal.inc(outLabels(message));
  }
  sent(message: Envelope, attempt: number): void {
    this.sentTotal.inc(outLabels(message));
    if (attempt > 1) this.retriedTotal.inc(outLabels(message));
  }
  acked(message: Envelope): void {
    this.ackedTotal.inc(outLabels(message));
  }
  failed(message: Envelope): void {
    this.failedTotal.inc(outLabels(message));
  }
  dropped(reason: string): void {
    this.droppedTotal.inc({ reason });
  }
  refused(method: string, fromNode: string): void {
    this.refusedTotal.inc({ method, from_node: fromNode });
  }
  busy(fromNode: string): void {
    this.busyTotal.inc({ from_node: fromNode });
  }
  errorReportDropped(): void {
    this.errorReportsDroppedTotal.inc({});
  }

  /** One pruning of the store ended: rows deleted by table (the `pages` given back are not rows). */
  pruned(counts: Record<string, number>): void {
    for (const [table, n] of Object.entries(counts)) if (table !== "pages" && n > 0) this.prunedTotal.inc({ table }, n);
  }

  executed(message: Envelope, durationMs: number): void {
    this.executedTotal.inc({ method: message.method, from_node: message.fromNode });
    this.duration.observe({ method: message.method }, durationMs / 1000);
  }

  text(): string {
    return this.registry.text();
  }
}

function outLabels(message: Envelope): Labels {
  return { method: message.method, to_node: message.toNode };
}
