/**
 * A nats-server on this machine, for the demo and the tests: started on a
 * free port (port -1 and a ports file, as nats.js's own test harness does),
 * with startup raced against early exit, and able to stop, be killed and
 * restart on the same port so that nodes reconnect to it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const CANDIDATES = ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/** Path of the nats-server binary, or undefined when it is not installed. */
export function findNatsServer(): string | undefined {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  for (const c of CANDIDATES.slice(1)) if (existsSync(c)) return c;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "nats-server"))) return join(dir, "nats-server");
  }
  return undefined;
}

export interface LocalServerOptions {
  /** Folder for the ports file and logs (created). */
  dir: string;
  /** Fixed port; default: a free one. */
  port?: number;
  /** Extra nats-server arguments (e.g. ["-c", "server.conf"]). */
  args?: string[];
}

export class LocalNatsServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  port = 0;

  private constructor(private readonly opts: LocalServerOptions) {}

  static async start(opts: LocalServerOptions): Promise<LocalNatsServer> {
    const s = new LocalNatsServer(opts);
    await s.launch(opts.port ?? -1);
    return s;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Read the configuration file again (nats-server reloads on SIGHUP), keeping every connection. */
  reload(): void {
    this.child?.kill("SIGHUP");
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  private async launch(port: number): Promise<void> {
    const bin = findNatsServer();
    if (!bin) throw new Error("nats-server is not installed: run ./setup.sh, or apt-get install -y nats-server");
    const portsDir = join(this.opts.dir, `ports-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    mkdirSync(portsDir, { recursive: true });
    const child = spawn(
      bin,
      ["-a", "127.0.0.1", "-p", String(port), "--ports_file_dir", portsDir, ...(this.opts.args ?? [])],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once("exit", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
    const deadline = Date.now() + 10_000;
    try {
      while (Date.now() < deadline) {
        if (this.child !== child)
          throw new Error(`nats-server exited at start: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
        const file = readdirSync(portsDir).find((f) => f.endsWith(".ports"));
        if (file) {
          // The file can be there before nats-server has written it: read it again until it parses.
          const url = parsePorts(readFileSync(join(portsDir, file), "utf8"))?.nats?.[0];
          if (url) {
            this.port = Number(new URL(url).port);
            return;
          }
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`nats-server did not start within 10 s: ${stderr}`);
    } finally {
      rmSync(portsDir, { recursive: true, force: true });
    }
  }

  /** Graceful stop. */
  async stop(): Promise<void> {
    this.child?.kill("SIGTERM");
    await this.exited;
  }

  /** Crash it (SIGKILL): clients see the link drop without a goodbye. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exited;
  }

  /** Start again on the same port. */
  async restart(): Promise<void> {
    if (this.child) await this.stop();
    await this.launch(this.port);
  }
}

function parsePorts(text: string): { nats?: string[] } | undefined {
  try {
    return JSON.parse(text) as { nats?: string[] };
  } catch {
    return undefined;
  }
}
