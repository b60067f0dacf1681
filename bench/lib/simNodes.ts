/**
 * Many simulated Steward nodes in one process: each a real StewardNode with
 * its own folders, store, socket and broker connection; only the process
 * (and its event loop) is shared. Run as a script it is one such process:
 *
 *   node --import tsx bench/lib/simNodes.ts DIR BROKER_URL CENTRAL NAME,NAME,…
 *
 * It prints "ready <n> <ms>" once every node is on the broker, and closes
 * them all on SIGTERM. `SimFleet` spreads nodes over such processes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { msSince, now, ROOT, startInProcessNode, type WatchedNode } from "./common.js";

/** Start the named nodes in this process, `parallel` at a time. */
export async function startSimNodes(
  dir: string,
  brokerAddress: string,
  central: string,
  names: string[],
  parallel = 25,
): Promise<WatchedNode[]> {
  const nodes: WatchedNode[] = [];
  for (let i = 0; i < names.length; i += parallel) {
    const batch = names.slice(i, i + parallel);
    nodes.push(
      ...(await Promise.all(batch.map((name) => startInProcessNode(join(dir, name), name, brokerAddress, central)))),
    );
  }
  return nodes;
}

/** Nodes spread over child processes, each running this file. */
export class SimFleet {
  private children: { child: ChildProcess; exited: Promise<void> }[] = [];
  /** Milliseconds until every node of every process was on the broker. */
  readyMs = 0;

  static async start(
    dir: string,
    brokerAddress: string,
    central: string,
    names: string[],
    processes: number,
  ): Promise<SimFleet> {
    const fleet = new SimFleet();
    const t0 = now();
    try {
      const per = Math.ceil(names.length / processes);
      const starts: Promise<void>[] = [];
      for (let p = 0; p < processes; p++) {
        const part = names.slice(p * per, (p + 1) * per);
        if (part.length > 0) starts.push(fleet.spawnOne(join(dir, `sim${p}`), brokerAddress, central, part));
      }
      await Promise.all(starts);
    } catch (err) {
      await fleet.close();
      throw err;
    }
    fleet.readyMs = msSince(t0);
    return fleet;
  }

  private spawnOne(dir: string, brokerAddress: string, central: string, names: string[]): Promise<void> {
    const prof = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
    const child = spawn(
      process.execPath,
      [...prof, "--import", "tsx", join(ROOT, "bench/lib/simNodes.ts"), dir, brokerAddress, central, names.join(",")],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    this.children.push({ child, exited });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`simulated nodes not ready within 180 s (${names.length} nodes)`)),
        180_000,
      );
      child.once("exit", (code) => reject(new Error(`simulated nodes process exited (${code})`)));
      child.stdout?.setEncoding("utf8");
      child.stdout?.on("data", (d: string) => {
        if (d.includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  get pids(): number[] {
    return this.children.flatMap((c) => (c.child.pid === undefined ? [] : [c.child.pid]));
  }

  async close(): Promise<void> {
    for (const c of this.children) c.child.kill("SIGTERM");
    await Promise.all(this.children.map((c) => c.exited));
  }
}

async function main(argv: string[]): Promise<void> {
  const [dir, broker, central, list] = argv;
  if (!dir || !broker || !central || !list) throw new Error("usage: simNodes.ts DIR BROKER_URL CENTRAL NAME,NAME,…");
  const t0 = now();
  const nodes = await startSimNodes(dir, broker, central, list.split(","));
  process.stdout.write(`ready ${nodes.length} ${Math.round(msSince(t0))}\n`);
  await new Promise<void>((resolve) => process.once("SIGTERM", () => resolve()));
  await Promise.allSettled(nodes.map((n) => n.node.close()));
  process.exit(0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`simNodes: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
