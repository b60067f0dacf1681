/**
 * What every benchmark shares: a scratch folder, a real nats-server on a
 * free port (127.0.0.1 only), Steward nodes in this process or as child
 * processes, a way to await a message's final state without polling, and
 * the figures (percentiles, medians) that the table prints.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { findNatsServer, LocalNatsServer } from "../../src/harness/natsServer.js";
import { NodeProcess } from "../../src/harness/nodeProcess.js";
import { createLogger } from "../../src/log.js";
import type { MessageState } from "../../src/message/message.js";
import { loadConfig } from "../../src/node/config.js";
import { StewardNode } from "../../src/node/node.js";

export const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");
/** The built CLI that node processes run (`npm run bench` builds it first). */
export const STEWARD_BIN = join(ROOT, "dist/cli/main.js");

/** One line of the results table. */
export interface Row {
  name: string;
  steward: string;
  baseline: string;
  ratio: string;
  target: string;
  /** undefined when the row has no target. */
  met?: boolean;
  /** Extra figures, printed under the table. */
  notes?: string[];
}

/** A benchmark's context: where to put files, the broker, and who cleans up. */
export class Bench {
  readonly dir: string;
  broker!: LocalNatsServer;
  private cleanups: (() => unknown)[] = [];

  private constructor(name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `steward-bench-${name}-`));
  }

  static async start(name: string): Promise<Bench> {
    const b = new Bench(name);
    try {
      b.broker = await LocalNatsServer.start({ dir: join(b.dir, "broker") });
      b.onClose(() => b.broker.stop());
    } catch (err) {
      await b.close();
      throw err;
    }
    return b;
  }

  onClose(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  /** A Steward node inside this process (its own store, socket, broker connection), with a way to await its messages. */
  async inProcessNode(
    nodeName: string,
    centralNodeName: string,
    settings: Record<string, string> = {},
  ): Promise<WatchedNode> {
    const node = await startInProcessNode(
      join(this.dir, nodeName),
      nodeName,
      this.broker.url,
      centralNodeName,
      settings,
    );
    this.onClose(() => node.node.close());
    return node;
  }

  /** A Steward node as its own process, running dist/cli/main.js. */
  async processNode(
    nodeName: string,
    centralNodeName: string,
    settings: Record<string, string | number> = {},
  ): Promise<NodeProcess> {
    const p = new NodeProcess({
      nodeName,
      dir: join(this.dir, nodeName),
      brokerAddress: this.broker.url,
      centralNodeName,
      entry: STEWARD_BIN,
      // BENCH_CPU_PROF=DIR: each node writes a CPU profile to DIR when it stops (not when it is SIGKILLed).
      ...(process.env.BENCH_CPU_PROF && {
        nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`],
      }),
      settings: {
        startPubREQHello: 0,
        logLevel: "warn",
        ...(nodeName === centralNodeName && { autoApproveKeys: 1 }),
        ...settings,
      },
    });
    this.onClose(() => p.close());
    await p.start();
    return p;
  }

  /** Every cleanup runs, in reverse order, even when one fails. */
  async close(): Promise<void> {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // Keep cleaning up.
      }
    }
    if (!process.env.KEEP_BENCH_DIRS) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A final state, as the origin node stored it. */
export interface Settled {
  id: string;
  state: MessageState;
}

/**
 * A node of this process whose final states can be awaited. The benchmark
 * hooks the node's own store calls that write a final state (`moveToFinalByReply`
 * for a reply that came back, `moveToFinal` for a delivery that failed), so that the
 * time measured ends when the state is written and on disk (`durable()`) —
 * no polling delay.
 */
export class WatchedNode {
  private waiting = new Map<string, (s: Settled) => void>();
  private early = new Map<string, Settled>();

  constructor(readonly node: StewardNode) {
    const outgoing = node.store.outgoing;
    const byReply = outgoing.moveToFinalByReply.bind(outgoing);
    const final = outgoing.moveToFinal.bind(outgoing);
    outgoing.moveToFinalByReply = (id, state, fields) => {
      const changed = byReply(id, state, fields);
      this.settled(id, state);
      return changed;
    };
    outgoing.moveToFinal = (id, state, fields) => {
      const changed = final(id, state, fields);
      if (changed) this.settled(id, state);
      return changed;
    };
  }

  private settled(id: string, state: MessageState): void {
    const done = () => this.onDisk(id, state);
    this.node.store.durable().then(done, done);
  }

  private onDisk(id: string, state: MessageState): void {
    const w = this.waiting.get(id);
    if (w) {
      this.waiting.delete(id);
      w({ id, state });
    } else this.early.set(id, { id, state });
  }

  /** Hand a document to the node as its inputs do; returns the accepted ids. */
  async accept(doc: unknown): Promise<string[]> {
    const answers = await this.node.accept(JSON.stringify(doc), "bench");
    return answers.map((a) => {
      if (!a.ok) throw new Error(`refused: ${a.error}`);
      return a.id;
    });
  }

  /** Resolves when the message reaches a final state. */
  final(id: string, timeoutMs = 60_000): Promise<Settled> {
    const early = this.early.get(id);
    if (early) {
      this.early.delete(id);
      return Promise.resolve(early);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`message ${id} not final within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }
}

/** Start a node in this process: settings as flags would give them, nothing read from the environment. */
export async function startInProcessNode(
  dir: string,
  nodeName: string,
  brokerAddress: string,
  centralNodeName: string,
  settings: Record<string, string> = {},
): Promise<WatchedNode> {
  const config = loadConfig(
    {
      nodeName,
      brokerAddress,
      centralNodeName,
      configFolder: join(dir, "etc"),
      socketFolder: join(dir, "tmp"),
      databaseFolder: join(dir, "var"),
      subscribersDataFolder: join(dir, "data"),
      readFolder: join(dir, "readfolder"),
      // In-process nodes share the bench's working folder: every folder a node writes goes under its own dir.
      startupFolder: join(dir, "startup"),
      auditLogFolder: join(dir, "log"),
      natsConnectRetryInterval: "1",
      startPubREQHello: "0",
      logLevel: "warn",
      // The bench's central admits every node's key at its first hello, as the demo's does.
      ...(nodeName === centralNodeName && { autoApproveKeys: "1" }),
      ...settings,
    },
    { env: {}, persist: false },
  );
  const node = await StewardNode.start(config, createLogger(nodeName, config.logLevel as "warn"));
  const watched = new WatchedNode(node);
  // Generous: four processes of 250 simulated nodes share 2 cores with central's bundles while they start.
  await waitUntil(() => node.health().broker === "up", 60_000, `${nodeName} to reach the broker`);
  return watched;
}

export async function waitUntil(cond: () => boolean, timeoutMs: number, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Milliseconds since `t0` (from `now()`). */
export function now(): bigint {
  return process.hrtime.bigint();
}
export function msSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export const median = (values: number[]): number => percentile(values, 50);

export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return "n/a";
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString("en-US");
  if (Math.abs(n) >= 100) return n.toFixed(0);
  return n.toFixed(digits);
}

export function ratio(a: number, b: number): string {
  return `${fmt(a / b)}×`;
}

/** Resident memory of a process in MB (VmRSS), or NaN when /proc cannot tell. */
export function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** The machine the figures come from. */
export function machine(): Record<string, string> {
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "not installed";
    }
  };
  const nats = findNatsServer();
  return {
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: run("uname", ["-sr"]),
    node: process.version,
    "nats-server": nats ? run(nats, ["--version"]) : "not installed",
    ansible: run("ansible", ["--version"]).split("\n")[0] ?? "not installed",
  };
}
