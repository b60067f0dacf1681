/**
 * 3. Commands: N `cliCommand` messages (`echo i`) from node a (this process)
 * to node b (its own process), handed over as one document as an operator
 * would, until every reply is back (the default replyMethod, fileAppend,
 * writes each result on a) — against running the same N commands here, one
 * after another. Rounds alternate; the median round counts.
 */
import { spawn } from "node:child_process";
import { Bench, fmt, median, msSince, now, type Row } from "./lib/common.js";

export interface CommandsOptions {
  count?: number;
  rounds?: number;
}

function runLocally(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      out += d;
    });
    child.on("error", reject);
    child.on("close", () => resolve(out));
  });
}

export async function commands(opts: CommandsOptions = {}): Promise<Row[]> {
  const count = opts.count ?? 200;
  const rounds = opts.rounds ?? 3;
  const bench = await Bench.start("commands");
  try {
    const a = await bench.inProcessNode("a", "a");
    await bench.processNode("b", "a");

    const viaSteward = async (): Promise<number> => {
      const t0 = now();
      const ids = await a.accept(
        Array.from({ length: count }, (_, i) => ({
          toNode: "b",
          method: "cliCommand",
          methodArgs: ["echo", String(i)],
        })),
      );
      const states = await Promise.all(ids.map((id) => a.final(id)));
      const bad = states.filter((s) => s.state !== "done");
      if (bad.length > 0) throw new Error(`${bad.length} commands did not end done`);
      return msSince(t0);
    };
    const locally = async (): Promise<number> => {
      const t0 = now();
      for (let i = 0; i < count; i++) await runLocally("echo", [String(i)]);
      return msSince(t0);
    };
    await viaSteward();
    await locally();
    const steward: number[] = [];
    const baseline: number[] = [];
    for (let r = 0; r < rounds; r++) {
      steward.push(await viaSteward());
      baseline.push(await locally());
    }
    const s = median(steward);
    const b = median(baseline);
    return [
      {
        name: `${count} × cliCommand echo, with replies (ms)`,
        steward: fmt(s, 0),
        baseline: fmt(b, 0),
        ratio: `${fmt(s / b)}×`,
        target: "≤ 1.5×",
        met: s / b <= 1.5,
        notes: [
          `commands: baseline = the same ${count} commands spawned here one after another; ${rounds} alternating rounds: ` +
            `Steward ${steward.map((x) => fmt(x, 0)).join(", ")} ms; local ${baseline.map((x) => fmt(x, 0)).join(", ")} ms`,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}
