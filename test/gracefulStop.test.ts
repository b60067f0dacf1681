/**
 * A graceful stop (SIGTERM) of the receiver: runs in progress may finish within stopGracePeriod and their
 * replies go out; what is still running then is ended, recorded as interrupted, and run again at the next
 * start with its result marked `interrupted` — not `rerun`, which stays the mark of a crash (SIGKILL). A
 * schedule stopped midway goes on at its next slot. See docs/DELIVERY.md, "Restarts".
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stateText } from "../src/cli/format.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { cmd, processesWith, RunsLog } from "../src/harness/runs.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("graceful-stop", ["central"]);
});
after(() => fleet.close());

/** A bash snippet: sleep `seconds` on this message's first run only (its runs are counted in `runs`). */
function slowFirstRun(runs: RunsLog, seconds: number, marker: string): string {
  return `if [ "$(grep -c "$STEWARD_MESSAGE_ID" '${runs.path}')" -lt 2 ]; then sleep ${seconds}; : ${marker}; fi; echo finished`;
}

const uniqueMarker = (name: string) =>
  `steward-${name}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

test("a run that ends within stopGracePeriod finishes, its reply goes out, and the node exits", async () => {
  const ship = await fleet.add("shipgrace", { stopGracePeriod: 10 });
  const runs = new RunsLog(fleet, "grace");
  const [id = ""] = await fleet.sendOk(
    "central",
    cmd("shipgrace", runs.args("sleep 2; echo finished"), { methodTimeout: 20, ACKTimeout: 2, retries: 20 }),
  );
  await sleepUntil(() => runs.count(id) === 1, { what: "the run to start" });
  await ship.stop(); // SIGTERM about half a second into the 2 s run
  assert.equal(ship.running, false, "the node exited");

  const m = await fleet.waitState("central", id, undefined, 20_000);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.data, "finished\n");
  assert.equal(m.result?.rerun, undefined, JSON.stringify(m));
  assert.equal(m.result?.interrupted, undefined, JSON.stringify(m));
  assert.equal(runs.count(id), 1);

  // Started again, it runs nothing twice: a later message goes through, and the first ran once.
  await ship.start();
  const [later = ""] = await fleet.sendOk("central", cmd("shipgrace", runs.args()));
  assert.equal((await fleet.waitState("central", later)).state, "done");
  assert.equal(runs.count(id), 1, "the finished run is not run again after the restart");
  await ship.stop();
});

test("a run cut by stopGracePeriod is ended, run again at the next start, and marked interrupted, not rerun", async () => {
  const ship = await fleet.add("shipcut", { stopGracePeriod: 1 });
  const runs = new RunsLog(fleet, "cut");
  const marker = uniqueMarker("cut");
  const [id = ""] = await fleet.sendOk(
    "central",
    cmd("shipcut", runs.args(slowFirstRun(runs, 60, marker)), { methodTimeout: 120, ACKTimeout: 2, retries: 30 }),
  );
  try {
    await sleepUntil(() => runs.count(id) === 1 && processesWith(marker).length > 0, { what: "the first run" });
    const stopping = Date.now();
    await ship.stop();
    const took = Date.now() - stopping;
    // stopGracePeriod (1 s) plus generous slack: never the 60 s of the command.
    assert.ok(took < 15_000, `the node exited ${took} ms after SIGTERM`);
    assert.deepEqual(processesWith(marker), [], "the stop ended the run's process tree");
    const meanwhile = await fleet.status("central", id);
    assert.notEqual(meanwhile.state, "done", JSON.stringify(meanwhile));

    await ship.start();
    const m = await fleet.waitState("central", id, undefined, 30_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "finished\n");
    assert.equal(m.result?.interrupted, true, JSON.stringify(m));
    assert.equal(m.result?.rerun, undefined, JSON.stringify(m));
    assert.equal(m.interrupted, true);
    assert.match(stateText(m), /done \(exit 0\) interrupted, run again/);
    assert.equal(runs.count(id), 2, "run once before the stop and once after the start");
  } finally {
    for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
    await ship.stop();
  }
});

test("a run cut by a crash (SIGKILL) is still marked rerun, not interrupted", async () => {
  const ship = await fleet.add("shipcrash", { stopGracePeriod: 1 });
  const runs = new RunsLog(fleet, "crash");
  const marker = uniqueMarker("crash");
  const [id = ""] = await fleet.sendOk(
    "central",
    cmd("shipcrash", runs.args(slowFirstRun(runs, 60, marker)), { methodTimeout: 120, ACKTimeout: 2, retries: 30 }),
  );
  try {
    await sleepUntil(() => runs.count(id) === 1 && processesWith(marker).length > 0, { what: "the first run" });
    await ship.kill();
    await ship.start();
    const m = await fleet.waitState("central", id, undefined, 30_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.rerun, true, JSON.stringify(m));
    assert.equal(m.result?.interrupted, undefined, JSON.stringify(m));
    assert.match(stateText(m), /re-run/);
    assert.equal(runs.count(id), 2);
  } finally {
    for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
    await ship.stop();
  }
});

test("a stream cut by the stop says so in its last part", async () => {
  const ship = await fleet.add("shipstream", { stopGracePeriod: 1 });
  const runs = new RunsLog(fleet, "stream");
  const marker = uniqueMarker("stream");
  const [id = ""] = await fleet.sendOk("central", {
    ...cmd("shipstream", runs.args(`echo first-line; ${slowFirstRun(runs, 60, marker)}`), {
      methodTimeout: 120,
      ACKTimeout: 2,
      retries: 30,
    }),
    method: "cliCommandCont",
  });
  try {
    await sleepUntil(async () => (await fleet.status("central", id)).parts !== undefined, { what: "a first part" });
    await ship.stop();
    let cut = await fleet.status("central", id);
    // The part sent at the stop belongs to the run it ends: it says so in its data, and carries that run's
    // marking (none here), so that the origin orders it among that run's parts, before the next run's.
    await sleepUntil(
      async () =>
        /\[steward\] stopped: node stopping/.test((cut = await fleet.status("central", id)).result?.data ?? ""),
      { what: () => `the part sent at the stop (last: ${JSON.stringify(cut)})` },
    );
    assert.equal(cut.state, "running", JSON.stringify(cut));
    assert.notEqual(cut.result?.interrupted, true, JSON.stringify(cut));

    await ship.start();
    const m = await fleet.waitState("central", id, undefined, 30_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.interrupted, true, JSON.stringify(m));
    assert.equal(runs.count(id), 2);
  } finally {
    for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
    await ship.stop();
  }
});

test("a schedule stopped midway goes on at its next slot: no catch-up of the missed slots, not from zero", async (t) => {
  const ship = await fleet.add("shipsched", { stopGracePeriod: 10 });
  const file = join(fleet.dir, "sched-slots.log");
  const lines = () => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).length : 0);
  const interval = 3000;
  const slots = 6; // at 0, 3, 6, 9, 12 and 15 s after arrival
  const sentAt = Date.now();
  const [id = ""] = await fleet.sendOk("central", {
    ...cmd("shipsched", ["bash", "-c", `echo x >> '${file}'`], { ACKTimeout: 2, retries: 30 }),
    schedule: [interval / 1000, (slots * interval) / 1000],
  });
  await sleepUntil(() => lines() >= 2, { what: "the runs of the first two slots" });
  const stopping = Date.now();
  await ship.stop();
  // Between two runs, a schedule does not hold the stop for its stopGracePeriod (10 s).
  assert.ok(Date.now() - stopping < 9000, `stopped in ${Date.now() - stopping} ms`);
  const beforeStop = lines();

  // Miss at least one slot: start again halfway between two slots, well after the third.
  await sleepUntil(() => Date.now() >= sentAt + 2.5 * interval, { timeoutMs: 30_000, what: "a slot to pass" });
  const starting = Date.now();
  await ship.start();
  const started = Date.now();
  const m = await fleet.waitState("central", id, undefined, 40_000);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.interrupted, true, JSON.stringify(m));

  const afterStart = lines() - beforeStop;
  t.diagnostic(`${beforeStop} runs before the stop, ${afterStart} after the start`);
  // Slots still ahead when the node came back (the message arrived a little after sentAt: 1 s of slack).
  const ahead = (at: number) => Array.from({ length: slots }, (_, k) => sentAt + k * interval).filter((t) => t > at);
  const most = ahead(starting - 1000).length;
  const least = ahead(started + 1000).length;
  assert.ok(
    afterStart >= least && afterStart <= most,
    `${afterStart} runs after the start: one per slot still ahead (${least}–${most}), none at once for the missed ones`,
  );
  assert.ok(beforeStop + afterStart < slots, `a missed slot is not made up: ${beforeStop} + ${afterStart} runs`);
  await ship.stop();
});
