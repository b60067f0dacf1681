/**
 * A Steward node run as a separate process, in a folder of its own — what
 * the demo and the tests start. Start, wait until it is connected, stop it
 * gracefully, SIGKILL it, start it again with the same folder and store.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import { type Health, health } from "../client/client.js";

export interface NodeProcessOptions {
  nodeName: string;
  /** The node's own folder: etc/, tmp/, var/, data/, readfolder/ and node.log live here. */
  dir: string;
  brokerAddress: string;
  centralNodeName?: string;
  /** More settings as flags, e.g. { startPubREQHello: 1 }. */
  settings?: Record<string, string | number>;
  /** The steward entry point; default: the one running now. */
  entry?: string;
  /** Flags for node itself, before the entry (`--cpu-prof`: Node refuses it in NODE_OPTIONS). */
  nodeArgs?: string[];
  /** More environment variables for the process (e.g. STEWARD_TEST_CLOCK_OFFSET). */
  env?: Record<string, string>;
}

export class NodeProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private logStream: WriteStream | undefined;
  /** Everything the node printed on stdout (console method output). */
  stdout = "";

  constructor(readonly opts: NodeProcessOptions) {
    mkdirSync(opts.dir, { recursive: true });
  }

  get socketPath(): string {
    return join(this.opts.dir, "tmp", "steward.sock");
  }
  /** config.json, the node's key and its listeners' token (listener.token). */
  get configFolder(): string {
    return join(this.opts.dir, "etc");
  }
  get dataFolder(): string {
    return join(this.opts.dir, "data");
  }
  get readFolder(): string {
    return join(this.opts.dir, "readfolder");
  }
  get logPath(): string {
    return join(this.opts.dir, "node.log");
  }
  get running(): boolean {
    return this.child !== undefined;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Start the process; resolves once its socket answers (and, with `connected`, once it is on the broker). */
  async start(opts: { connected?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const o = this.opts;
    // Without an entry: run the same steward as this process, with the same loader flags (tsx in development).
    const entry = o.entry ?? process.argv[1] ?? "";
    const loader = [...(o.nodeArgs ?? []), ...(o.entry ? [] : process.execArgv)];
    const flags = {
      nodeName: o.nodeName,
      brokerAddress: o.brokerAddress,
      centralNodeName: o.centralNodeName ?? "central",
      configFolder: join(o.dir, "etc"),
      socketFolder: join(o.dir, "tmp"),
      databaseFolder: join(o.dir, "var"),
      subscribersDataFolder: join(o.dir, "data"),
      readFolder: join(o.dir, "readfolder"),
      natsConnectRetryInterval: 1,
      ...o.settings,
    };
    const args = [...loader, entry, "start", ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`)];
    this.logStream ??= createWriteStream(this.logPath, { flags: "a" });
    const child = spawn(process.execPath, args, {
      cwd: o.dir,
      stdio: ["ignore", "pipe", "pipe"],
      ...(o.env && { env: { ...process.env, ...o.env } }),
    });
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => {
      this.stdout += d;
    });
    child.stderr?.pipe(this.logStream, { end: false });
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once("exit", (code) => {
        if (this.child === child) this.child = undefined;
        resolve(code);
      }),
    );
    await this.waitReady(opts.connected ?? true, opts.timeoutMs ?? 15_000);
  }

  private async waitReady(connected: boolean, timeoutMs: number): Promise<Health> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (!this.child) throw new Error(`node ${this.opts.nodeName} exited during start; see ${this.logPath}`);
      try {
        const h = await health(this.socketPath);
        if (!connected || h.broker === "up") return h;
        last = `broker ${h.broker}`;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `node ${this.opts.nodeName} not ready within ${timeoutMs} ms (${String(last)}); see ${this.logPath}`,
    );
  }

  /** Graceful stop (SIGTERM). */
  async stop(): Promise<void> {
    this.child?.kill("SIGTERM");
    await this.exited;
  }

  /** Crash it: SIGKILL, no goodbye, whatever it was doing. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exited;
  }

  /**
   * Freeze it (SIGSTOP): alive, connected as far as the kernel and the broker can tell, answering nothing, as a
   * node stalled on a hung disk or a full CPU is. Returns what thaws it (SIGCONT).
   */
  freeze(): () => void {
    const child = this.child;
    child?.kill("SIGSTOP");
    return () => void child?.kill("SIGCONT");
  }

  async close(): Promise<void> {
    await this.stop();
    this.logStream?.end();
    this.logStream = undefined;
  }
}
