/**
 * schedule [interval, total]: the receiver re-runs the method every interval
 * until total has passed; each run replies; a receiver restart resumes what
 * is left of the schedule.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("schedule", ["central", "ship1"]);
});
after(() => fleet.close());

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);

test("runs every interval until total has passed, each run replies, then done", async () => {
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", "echo run-$(date +%s%N)"],
    directory: "sched",
    fileName: "runs.log",
    schedule: [1, 4],
  });
  const file = join(fleet.node("central").dataFolder, "sched", "ship1", "runs.log");
  await sleepUntil(() => lines(file).length >= 2, { what: "two runs' replies" });
  const during = await fleet.status("central", id as string);
  assert.equal(during.state, "running", "a schedule runs on between its replies");
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done");
  const runs = lines(file).filter((l) => l.startsWith("run-"));
  // Runs at 0, 1, 2, 3 s after arrival: four, and each is a separate run.
  assert.equal(runs.length, 4, runs.join("\n"));
  assert.equal(new Set(runs).size, 4);
});

test("a receiver restart resumes what is left of the schedule", async () => {
  const marker = join(fleet.dir, "sched-marker.log");
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", `echo x >> ${marker}`],
    replyMethod: "none",
    schedule: [1, 6],
  });
  await sleepUntil(() => lines(marker).length >= 2, { what: "two runs before the crash" });
  await fleet.node("ship1").kill();
  const before = lines(marker).length;
  await fleet.node("ship1").start();
  const m = await fleet.waitState("central", id as string, undefined, 20_000);
  assert.equal(m.state, "done");
  const after = lines(marker).length;
  assert.ok(after > before, `runs after the restart (${before} before, ${after} after)`);
  // Six seconds at one run per second, give or take the crash's cut run: never the schedule started over.
  assert.ok(after <= 8, `the schedule resumed rather than restarted: ${after} runs`);
});
