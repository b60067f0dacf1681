/**
 * 8. Disk trouble: the database folder full (a small tmpfs filled to the last
 * byte) on the receiver and on the sender, and read-only (remounted) at a
 * node's start. Each gives a clear error — the input answers "not accepted",
 * the receiver does not ACK what it cannot store, a node refuses to start —
 * the store is never corrupted (SQLite integrity_check), and once the disk is
 * back every accepted message is delivered.
 *
 * Needs root and `mount -t tmpfs` (a container without CAP_SYS_ADMIN cannot):
 * otherwise the scenario says so and is not run.
 */
import Database from "better-sqlite3";
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { submit } from "../../src/client/client.js";
import { Fleet } from "../../src/harness/fleet.js";
import { RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import {
  answering,
  emptyFigures,
  noteRecovery,
  PATIENT,
  recovery,
  settle,
  since,
  sleep,
  Stream,
} from "../lib/tally.js";

function mount(dir: string, mb: number): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m`, "tmpfs", dir], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs (${
      String((err as { stderr?: Buffer }).stderr ?? err)
        .trim()
        .split("\n")[0]
    })`;
  }
}

const sh = (args: string[]) => execFileSync(args[0] as string, args.slice(1), { stdio: "pipe" });

/** Fill the filesystem of `dir` to the last byte. */
function fill(dir: string): void {
  const fd = openSync(join(dir, "filler"), "w");
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch {
    // ENOSPC: full.
  }
  try {
    for (;;) writeSync(fd, block.subarray(0, 512));
  } catch {
    // Full to the byte.
  } finally {
    closeSync(fd);
  }
}

function integrity(file: string): string {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}

export const diskTrouble: Scenario = {
  name: "diskTrouble",
  title: "database folder full / read-only, then back",
  short: { messages: 200, faults: 1, outageS: 2 },
  full: { messages: 1000, faults: 3, outageS: 10 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-disk", []);
    const dbShip = join(fleet.dir, "ship1-db");
    const dbCentral = join(fleet.dir, "central-db");
    const mounted: string[] = [];
    try {
      for (const d of [dbShip, dbCentral]) {
        const why = mount(d, 16);
        if (why) {
          fig.skipped = `${why}; run as root where mount works`;
          return fig;
        }
        mounted.push(d);
      }
      await fleet.add("central", { databaseFolder: dbCentral });
      const ship1 = await fleet.add("ship1", { databaseFolder: dbShip });
      const errors = new Set<string>();
      const allIds: string[] = [];
      const runs = new RunsLog(fleet, "disk");
      let batch = 0;
      const stream = (n: number) =>
        new Stream({
          fleet,
          from: "central",
          toNode: "ship1",
          runs,
          prefix: `dk${batch++}`,
          total: n,
          window: 1e9,
          extra: PATIENT,
        });

      for (let k = 0; k < size.faults; k++) {
        // a) The receiver's disk full while messages arrive: it cannot store them, so it does not ACK them.
        fill(dbShip);
        fig.faults++;
        const s1 = stream(size.messages);
        await s1.start().finished();
        allIds.push(...s1.ids);
        await sleep(size.outageS * 1000);
        rmSync(join(dbShip, "filler"));
        await noteRecovery(fig, recovery(fleet, "central", s1.ids, Date.now()));
        if (readFileSync(ship1.logPath, "utf8").includes("check free space"))
          errors.add("receiver: store write failed, says to check free space");

        // b) The sender's disk full: the input says "not accepted" with the reason, per message.
        fill(dbCentral);
        fig.faults++;
        const doc = Array.from({ length: 20 }, (_, i) => ({
          id: `dkfull-${k}-${i}`,
          toNode: "ship1",
          method: "cliCommand",
          methodArgs: runs.args(),
          replyMethod: "none",
          ...PATIENT,
        }));
        // SQLite re-uses the room its WAL file already has: keep sending until the disk really says no.
        let answers = await submit(fleet.node("central").socketPath, JSON.stringify(doc));
        for (let more = 0; answers.every((a) => a.ok) && more < 200; more++) {
          for (const a of answers) if (a.ok) allIds.push(a.id);
          const extra = doc.map((m, i) => ({ ...m, id: `dkfull-${k}-${more}-${i}` }));
          answers = await submit(fleet.node("central").socketPath, JSON.stringify(extra));
        }
        const refused = answers.filter((a) => !a.ok);
        const firstRefusal = refused[0];
        if (firstRefusal && !firstRefusal.ok) errors.add(`input: ${firstRefusal.error.slice(0, 160)}`);
        for (const a of answers) if (a.ok) allIds.push(a.id);
        await sleep(size.outageS * 1000);
        rmSync(join(dbCentral, "filler"));
        const retry = await submit(fleet.node("central").socketPath, JSON.stringify(doc));
        for (const a of retry) if (a.ok && !allIds.includes(a.id)) allIds.push(a.id);
        await noteRecovery(fig, recovery(fleet, "central", allIds, Date.now()));
        log(
          `round ${k + 1}: ${allIds.length} accepted; disk-full answers: ${refused.length} of ${answers.length} refused`,
        );
      }

      // c) Read-only at start: the node refuses to start with a clear error; starts once the disk is writable.
      await ship1.stop();
      sh(["mount", "-o", "remount,ro", dbShip]);
      fig.faults++;
      const s3 = stream(size.messages);
      await s3.start().finished();
      allIds.push(...s3.ids);
      const logBefore = readFileSync(ship1.logPath, "utf8").length;
      let startError = "";
      try {
        await ship1.start({ timeoutMs: 5000 });
      } catch (err) {
        startError = (err as Error).message;
      }
      const tail = readFileSync(ship1.logPath, "utf8").slice(logBefore);
      const clear = /read-?only|writable/i.exec(tail);
      if (ship1.running) {
        fig.problems.push("ship1 started on a read-only database folder");
        await ship1.stop();
      } else if (clear)
        errors.add(
          `read-only start: ${tail
            .split("\n")
            .find((l) => clear && l.includes(clear[0]))
            ?.slice(0, 240)}`,
        );
      else
        fig.problems.push(
          `ship1 did not start on a read-only folder, but said nothing clear: ${startError} ${tail.slice(-300)}`,
        );
      sh(["mount", "-o", "remount,rw", dbShip]);
      const back = Date.now();
      await ship1.start();
      await noteRecovery(fig, recovery(fleet, "central", s3.ids, back));

      await settle(fig, fleet, "central", allIds, runs);
      for (const [name, file] of [
        ["ship1", join(dbShip, "ship1.sqlite")],
        ["central", join(dbCentral, "central.sqlite")],
      ] as const) {
        const ok = integrity(file);
        if (ok !== "ok") {
          fig.problems.push(`${name} store corrupted: ${ok}`);
          fig.lost++;
        }
      }
      const shown = [...errors].map((e) => e.replace(/store \/\S+: /, "store: ").slice(0, 110));
      fig.notes.push(`errors seen: ${shown.join(" / ") || "none"}; integrity_check ok`);
      if (errors.size < 3) fig.problems.push(`expected 3 kinds of clear error, saw: ${[...errors].join(" / ")}`);
      fig.answering = await answering(fleet);
    } finally {
      await fleet.close().catch(() => undefined);
      for (const d of mounted) {
        try {
          sh(["umount", "-l", d]);
        } catch {
          // Left mounted: the temp dir goes with the next reboot.
        }
      }
    }
    fig.seconds = since(t0);
    return fig;
  },
};
