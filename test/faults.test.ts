/**
 * The delivery guarantees (docs/DELIVERY.md) under faults: a sender SIGKILLed with accepted messages, a
 * receiver SIGKILLed mid-stream, the broker killed mid-stream, and a run cut
 * short by the receiver's crash. Every message is counted: all accepted ids
 * reach done, and each ran exactly once on the receiver (or, for a run the
 * receiver's crash cut short, twice and marked as a re-run).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { health } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import {
  cmd,
  countIn,
  notDone,
  notOnce,
  processesWith,
  RunsLog,
  strangers,
  waitAllFinal,
  waitCount,
} from "../src/harness/runs.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("faults", ["central", "ship1"]);
});
after(() => fleet.close());

const brokerState = async (node: string) => (await health(fleet.node(node).socketPath)).broker;

/**
 * Feed `total` messages from central in chunks, keeping at most `window`
 * unfinished at a time so that they flow over a while rather than all at
 * once; `hold()` true lets it go on without waiting (a fault is under way).
 */
async function feed(
  ids: string[],
  total: number,
  chunk: number,
  window: number,
  make: () => Record<string, unknown>,
  hold: () => boolean,
  stop: () => boolean = () => false,
): Promise<void> {
  while (ids.length < total && !stop()) {
    const n = Math.min(chunk, total - ids.length);
    ids.push(...(await fleet.sendOk("central", Array.from({ length: n }, make))));
    const sent = ids.length;
    await sleepUntil(
      async () => hold() || (await countIn(fleet, "central", ids, ["done", "failed"])) >= sent - window,
      {
        timeoutMs: 60_000,
        intervalMs: 50,
        what: "the stream to drain below its window",
      },
    );
  }
}

test("a sender SIGKILLed with accepted messages delivers them after restart, each run once (guarantees 1 and 5)", async () => {
  const runs = new RunsLog(fleet, "sender-crash");
  const central = fleet.node("central");
  await fleet.broker.stop();
  await sleepUntil(async () => (await brokerState("central")) !== "up", {
    what: "central to notice the broker is gone",
  });

  const ids = await fleet.sendOk(
    "central",
    Array.from({ length: 20 }, (_, i) => cmd("ship1", runs.args(`echo ${i}`), { ACKTimeout: 2, retries: 30 })),
  );
  assert.equal(ids.length, 20);
  assert.equal(new Set(ids).size, 20, "20 distinct ids");
  assert.equal(await countIn(fleet, "central", ids, ["queued"]), 20, "all queued while the broker is down");

  await central.kill();
  await fleet.broker.restart();
  await central.start();

  const views = await waitAllFinal(fleet, "central", ids, 60_000);
  assert.deepEqual(notDone(views, ids), [], "every accepted message is done");
  await sleepUntil(() => ids.every((id) => runs.count(id) >= 1), { what: "a run line for every message" });
  const counts = runs.counts();
  assert.deepEqual(notOnce(counts, ids), [], "each message ran exactly once");
  assert.deepEqual(strangers(counts, ids), []);
});

test("a sender SIGKILLed mid-stream loses nothing, and each message runs once (guarantees 5 and 6)", async (t) => {
  const runs = new RunsLog(fleet, "sender-crash-stream");
  const central = fleet.node("central");
  const ids: string[] = [];
  let killed = false;
  const make = () => cmd("ship1", runs.args("sleep 0.1"), { ACKTimeout: 2, retries: 20 });
  const feeding = feed(
    ids,
    100,
    10,
    30,
    make,
    () => killed,
    () => killed,
  );

  await waitCount(fleet, "central", ids, 40, ["done"], 60_000);
  // Let the feeder finish the submission it is in, so that every id it holds was answered "accepted"; then crash.
  killed = true;
  await feeding;
  const unfinished = ids.length - (await countIn(fleet, "central", ids, ["done"]));
  await central.kill();
  const accepted = ids.length;
  await central.start();
  // Whatever was accepted before the crash, fed the rest after it.
  if (ids.length < 100) ids.push(...(await fleet.sendOk("central", Array.from({ length: 100 - ids.length }, make))));

  const views = await waitAllFinal(fleet, "central", ids, 60_000);
  t.diagnostic(`accepted before the crash: ${accepted}, of them unfinished at the crash: ${unfinished}`);
  assert.ok(unfinished > 0, "the crash hit messages under way");
  assert.equal(ids.length, 100);
  assert.deepEqual(notDone(views, ids), [], "every accepted message is done");
  await sleepUntil(() => ids.every((id) => runs.count(id) >= 1), { what: "a run line for every message" });
  const counts = runs.counts();
  assert.deepEqual(notOnce(counts, ids), [], "each message ran exactly once (the receiver did not crash)");
  assert.deepEqual(strangers(counts, ids), []);
});

test("a receiver SIGKILLed mid-stream loses nothing; only a run its crash cut short runs again, marked (guarantees 4 and 5)", async (t) => {
  const runs = new RunsLog(fleet, "receiver-crash");
  const ship1 = fleet.node("ship1");
  const ids: string[] = [];
  let killed = false;
  // Each run takes a moment, so that some are running when ship1 dies.
  const feeding = feed(
    ids,
    200,
    10,
    30,
    () => cmd("ship1", runs.args("sleep 0.2"), { ACKTimeout: 2, retries: 20 }),
    () => killed,
  );

  await sleepUntil(async () => (await countIn(fleet, "central", ids, ["done"])) >= 50, {
    timeoutMs: 60_000,
    what: "50 messages done before the crash",
  });
  await ship1.kill();
  killed = true;
  const doneAtCrash = await countIn(fleet, "central", ids, ["done"]);
  await feeding;
  await ship1.start();

  const views = await waitAllFinal(fleet, "central", ids, 60_000);
  assert.equal(ids.length, 200);
  assert.deepEqual(notDone(views, ids), [], "every accepted message is done");
  await sleepUntil(() => ids.every((id) => runs.count(id) >= 1), { what: "a run line for every message" });
  const counts = runs.counts();
  const twice = ids.filter((id) => (counts.get(id) ?? 0) > 1);
  t.diagnostic(
    `done at the crash: ${doneAtCrash}; run twice: ${twice.length}; marked rerun: ${ids.filter((id) => views.get(id)?.rerun).length}`,
  );
  assert.deepEqual(
    ids.filter((id) => (counts.get(id) ?? 0) < 1),
    [],
    "every message ran",
  );
  assert.deepEqual(
    ids.filter((id) => (counts.get(id) ?? 0) > 2),
    [],
    "no message ran more than twice for one crash",
  );
  assert.deepEqual(
    twice.filter((id) => views.get(id)?.rerun !== true),
    [],
    "a message run twice is marked as a re-run",
  );
  assert.deepEqual(strangers(counts, ids), []);
});

test("the broker killed and restarted mid-stream loses nothing, and each message runs once", async (t) => {
  const runs = new RunsLog(fleet, "broker-crash");
  const ids: string[] = [];
  let outage = false;
  const feeding = feed(
    ids,
    300,
    15,
    40,
    () => cmd("ship1", runs.args(), { ACKTimeout: 2, retries: 30 }),
    () => outage,
  );

  for (const at of [60, 180]) {
    await waitCount(fleet, "central", ids, at, ["done"], 60_000);
    outage = true;
    await fleet.broker.kill();
    await sleepUntil(async () => (await brokerState("central")) !== "up" && (await brokerState("ship1")) !== "up", {
      what: "both nodes to notice the broker is gone",
    });
    await fleet.broker.restart();
    await sleepUntil(async () => (await brokerState("central")) === "up" && (await brokerState("ship1")) === "up", {
      what: "both nodes back on the broker",
    });
    t.diagnostic(
      `broker restarted with ${ids.length} accepted, ${await countIn(fleet, "central", ids, ["done"])} done`,
    );
    outage = false;
  }
  await feeding;

  const views = await waitAllFinal(fleet, "central", ids, 60_000);
  assert.equal(ids.length, 300);
  assert.deepEqual(notDone(views, ids), [], "every accepted message is done");
  await sleepUntil(() => ids.every((id) => runs.count(id) >= 1), { what: "a run line for every message" });
  const counts = runs.counts();
  assert.deepEqual(notOnce(counts, ids), [], "each message ran exactly once");
  assert.deepEqual(strangers(counts, ids), []);
});

test("a run cut short by the receiver's crash is run again and marked as a re-run (guarantee 5)", async () => {
  const runs = new RunsLog(fleet, "cut-short");
  const ship1 = fleet.node("ship1");
  const [id] = await fleet.sendOk(
    "central",
    cmd("ship1", runs.args("sleep 3; echo finished"), { methodTimeout: 10, ACKTimeout: 2, retries: 20 }),
  );
  await fleet.waitState("central", id as string, "running");
  await sleepUntil(() => runs.count(id as string) === 1, { what: "the first run to start" });
  await ship1.kill();
  await ship1.start();

  const m = await fleet.waitState("central", id as string, undefined, 30_000);
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.result?.rerun, true, `result marked as a re-run: ${JSON.stringify(m)}`);
  assert.equal(m.rerun, true);
  assert.equal(m.result?.data, "finished\n");
  assert.equal(runs.count(id as string), 2, "run once before the crash and once after");
});

test("the command of a run cut short by the receiver's crash does not outlive its methodTimeout (methodTimeout, guarantee 5)", async () => {
  const runs = new RunsLog(fleet, "orphan");
  const ship1 = fleet.node("ship1");
  const marker = `steward-orphan-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  // Runs far longer than its methodTimeout allows; the marker names its processes.
  const [id] = await fleet.sendOk(
    "central",
    cmd("ship1", runs.args(`sleep 40; : ${marker}`), { methodTimeout: 3, ACKTimeout: 2, retries: 20 }),
  );
  try {
    await sleepUntil(() => runs.count(id as string) === 1 && processesWith(marker).length > 0, {
      what: "the first run to start",
    });
    const beforeCrash = processesWith(marker);
    await ship1.kill();
    await ship1.start();

    // The re-run is cut off by methodTimeout: the message fails, marked as a re-run.
    const m = await fleet.waitState("central", id as string, undefined, 30_000);
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.match(m.reason ?? "", /methodTimeout/);
    assert.equal(m.rerun, true);
    assert.equal(runs.count(id as string), 2);
    // Neither run may still be going: methodTimeout is 3 s, the command wants 40 s.
    let left: number[] = [];
    await sleepUntil(
      () => {
        left = processesWith(marker);
        return left.length === 0;
      },
      {
        timeoutMs: 15_000,
        what: () =>
          `the command's processes to be gone after methodTimeout; still running: ${left
            .map(
              (pid) =>
                `${pid} (${beforeCrash.includes(pid) ? "started before the crash, orphaned by it" : "started after the crash"})`,
            )
            .join(", ")}`,
      },
    );
  } finally {
    // Do not leave the test's own orphans behind: each run leads its own process group (cliCommand starts it detached).
    for (const pid of processesWith(marker)) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
});
