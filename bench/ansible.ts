/**
 * 6. What a user would pick instead: `uname -a` on 20 targets, typed at the
 * command line. Steward: 20 node processes and an operator's node, and
 * `steward send --to t01 … --to t20 --wait -- uname -a` (the CLI process
 * included, as the user runs it). Ansible: an ad-hoc `command` on an
 * inventory of 20 aliases with the local connection, forks = 20 (its best
 * case; the default is 5). Rounds alternate; the median round counts.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Bench, fmt, median, msSince, now, type Row, STEWARD_BIN } from "./lib/common.js";

export interface AnsibleOptions {
  targets?: number;
  rounds?: number;
}

function timed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ ms: number; out: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      out += d;
    });
    child.stderr.resume();
    child.on("error", reject);
    child.on("close", (code) => resolve({ ms: msSince(t0), out, code }));
  });
}

function ansibleInstalled(): boolean {
  try {
    execFileSync("ansible", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export async function ansible(opts: AnsibleOptions = {}): Promise<Row[]> {
  const count = opts.targets ?? 20;
  const rounds = opts.rounds ?? 3;
  const name = `uname -a on ${count} targets, from the CLI (ms)`;
  const targets = Array.from({ length: count }, (_, i) => `t${String(i + 1).padStart(2, "0")}`);
  const bench = await Bench.start("ansible");
  try {
    const op = await bench.processNode("op", "op");
    await Promise.all(targets.map((t) => bench.processNode(t, "op")));
    const stewardArgs = [
      STEWARD_BIN,
      "send",
      `--socket-folder=${join(op.opts.dir, "tmp")}`,
      ...targets.flatMap((t) => ["--to", t]),
      "--wait",
      "--",
      "uname",
      "-a",
    ];
    const viaSteward = async (env: NodeJS.ProcessEnv = process.env) => {
      const r = await timed(process.execPath, stewardArgs, env);
      const results = r.out.split("\n").filter((l) => l.startsWith("== ")).length;
      if (r.code !== 0 || results !== count)
        throw new Error(`steward send: exit ${r.code}, ${results} results:\n${r.out}`);
      return r.ms;
    };

    if (!ansibleInstalled()) {
      const s = median([await viaSteward(), await viaSteward(), await viaSteward()]);
      return [
        { name, steward: fmt(s, 0), baseline: "Ansible not installed", ratio: "—", target: "≥ 20× faster", met: false },
      ];
    }
    const home = join(bench.dir, "ansible");
    mkdirSync(home, { recursive: true });
    const inventory = join(home, "inventory.ini");
    writeFileSync(
      inventory,
      `[targets]\n${targets.map((t) => `${t} ansible_connection=local ansible_python_interpreter=/usr/bin/python3`).join("\n")}\n`,
    );
    const env = { ...process.env, ANSIBLE_HOME: home, ANSIBLE_LOCAL_TEMP: join(home, "tmp"), ANSIBLE_NOCOLOR: "1" };
    const ansibleArgs = ["all", "-i", inventory, "-m", "command", "-a", "uname -a", "-f", String(count)];
    const viaAnsible = async () => {
      const r = await timed("ansible", ansibleArgs, env);
      const results = r.out.split("\n").filter((l) => / \| CHANGED \| rc=0/.test(l)).length;
      if (r.code !== 0 || results !== count) throw new Error(`ansible: exit ${r.code}, ${results} results:\n${r.out}`);
      return r.ms;
    };

    await viaSteward();
    await viaAnsible();
    const steward: number[] = [];
    const baseline: number[] = [];
    for (let r = 0; r < rounds; r++) {
      steward.push(await viaSteward());
      baseline.push(await viaAnsible());
    }
    const s = median(steward);
    const b = median(baseline);
    // What the CLI's own start costs here: Node reads the file NODE_EXTRA_CA_CERTS names at every start
    // (this machine sets it), so every `steward send` pays it and Ansible (Python) does not.
    const nodeStart = median(
      [
        await timed(process.execPath, ["-e", "0"]),
        await timed(process.execPath, ["-e", "0"]),
        await timed(process.execPath, ["-e", "0"]),
      ].map((r) => r.ms),
    );
    const extraCerts = process.env.NODE_EXTRA_CA_CERTS;
    const notes: string[] = [`node -e 0 takes ${fmt(nodeStart, 0)} ms here: the floor of any Node CLI`];
    if (extraCerts) {
      const plain = { ...process.env };
      delete plain.NODE_EXTRA_CA_CERTS;
      const bare = median(
        [
          await timed(process.execPath, ["-e", "0"], plain),
          await timed(process.execPath, ["-e", "0"], plain),
          await timed(process.execPath, ["-e", "0"], plain),
        ].map((r) => r.ms),
      );
      const without = [await viaSteward(plain), await viaSteward(plain), await viaSteward(plain)];
      notes.push(
        `this machine sets NODE_EXTRA_CA_CERTS=${extraCerts}, which Node loads at every start (node -e 0: ${fmt(nodeStart, 0)} ms with it, ${fmt(bare, 0)} ms without); ` +
          `steward send without it: ${without.map((x) => fmt(x, 0)).join(", ")} ms (${fmt(b / median(without), 1)}× faster than Ansible) — for information, the row above is as measured`,
      );
    }
    return [
      {
        name,
        steward: fmt(s, 0),
        baseline: `${fmt(b, 0)} (Ansible)`,
        ratio: `${fmt(b / s, 1)}× faster`,
        target: "≥ 20× faster",
        met: b / s >= 20,
        notes: [
          `ansible: ${rounds} alternating rounds: steward send ${steward.map((x) => fmt(x, 0)).join(", ")} ms; ` +
            `ansible ${baseline.map((x) => fmt(x, 0)).join(", ")} ms (-f ${count}, connection local)`,
          ...notes,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}
