/**
 * The methods whose results come back over time: cliCommandCont and tailFile
 * stream parts while they run, and the origin writes the parts in seq order however they arrive.
 * (httpGet's tests are in httpGet.test.ts.)
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Replies } from "../src/delivery/replies.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { createLogger } from "../src/log.js";
import { newEnvelope } from "../src/message/envelope.js";
import { Store } from "../src/store/store.js";
import { readIfExists } from "./helpers/methods-helpers.js";

let fleet: Fleet;

before(async () => {
  fleet = await Fleet.start("streaming", ["central", "ship1"]);
});
after(() => fleet.close());

const resultFile = (dir: string, file: string) => join(fleet.node("central").dataFolder, dir, "ship1", file);

describe("cliCommandCont", () => {
  test("streams output back while the command runs, then finishes done", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQnCliCommandCont",
      methodArgs: ["bash", "-c", "echo first; sleep 2; echo second"],
      replyMethod: "REQToFileAppend",
      directory: "cont",
      fileName: "out.log",
      methodTimeout: 20,
    });
    const file = resultFile("cont", "out.log");
    // The first line is on the sender while the command is still sleeping.
    await sleepUntil(() => existsSync(file) && readFileSync(file, "utf8").includes("first"), {
      what: "the first streamed part",
    });
    const during = await fleet.status("central", id as string);
    assert.equal(during.state, "running", "the message runs on while its parts come back");
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");
    assert.equal(readFileSync(file, "utf8"), "first\nsecond\n");
  });

  test("methodTimeout ends a follow-style command as its normal end", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommandCont",
      methodArgs: ["bash", "-c", "while true; do echo tick; sleep 0.3; done"],
      replyMethod: "none",
      methodTimeout: 2,
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.match(m.result?.data ?? "", /stopped: method timed out after 2s/);
  });
});

describe("tailFile", () => {
  test("sends new lines back, across truncation and rotation, until methodTimeout", async () => {
    const target = join(fleet.node("ship1").dataFolder, "app.log");
    writeFileSync(target, "old line, before the tail\n");
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQTailFile",
      methodArgs: [target],
      directory: "tail",
      fileName: "app.log",
      methodTimeout: 6,
    });
    const file = resultFile("tail", "app.log");
    const got = () => (existsSync(file) ? readFileSync(file, "utf8") : "");
    await fleet.waitState("central", id as string, "running");
    appendFileSync(target, "one\ntwo\n");
    await sleepUntil(() => got().includes("two\n"), { what: "lines appended to the followed file" });
    writeFileSync(target, "after truncate\n");
    await sleepUntil(() => got().includes("after truncate\n"), { what: "a line after truncation" });
    renameSync(target, `${target}.1`);
    writeFileSync(target, "after rotate\n");
    await sleepUntil(() => got().includes("after rotate\n"), { what: "a line after rotation" });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");
    assert.ok(!got().includes("old line"), "starts at the end of the file, like tail -f");
    assert.equal(got(), "one\ntwo\nafter truncate\nafter rotate\n");
  });

  test("a file that does not exist fails with the reason", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "tailFile",
      methodArgs: ["/no/such/file.log"],
      methodTimeout: 3,
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed");
    assert.match(m.reason ?? "", /cannot follow \/no\/such\/file\.log/);
  });
});

describe("parts in seq order", () => {
  test("the origin is away while the target streams: on its return the parts are written in seq order, each once", async () => {
    const central = fleet.node("central");
    const flag = join(fleet.node("ship1").dataFolder, "order.finished");
    const lines = Array.from({ length: 40 }, (_, i) => `line ${i + 1}`);
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommandCont",
      methodArgs: ["bash", "-c", `for i in $(seq 1 40); do echo line $i; sleep 0.1; done; touch order.finished`],
      replyMethod: "fileAppend",
      directory: "order",
      fileName: "out.log",
      methodTimeout: 60,
      // Each part is re-sent every second on its own clock while central is away, so they come back in any order.
      replyACKTimeout: 1,
      replyRetries: 100,
    });
    const file = resultFile("order", "out.log");
    await sleepUntil(() => existsSync(file), { what: "the first part on central" });
    await central.stop();
    // The command has ended on ship1: every later part, and the last reply, wait there for central.
    await sleepUntil(() => existsSync(flag), { timeoutMs: 30_000, what: "the command to end on ship1" });
    await central.start();
    const m = await fleet.waitState("central", id as string, undefined, 60_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.deepEqual(readFileSync(file, "utf8").trimEnd().split("\n"), lines);
    const log = readFileSync(central.logPath, "utf8");
    // They did come back out of order (some part waited for an earlier one), and no gap was left.
    assert.match(log, /a streamed part waits for the parts before it/);
    assert.doesNotMatch(log, /did not arrive within|arrived late/);
  });

  test("a gap that never fills (parts expired on the way) holds the rest a while, across a crash, then is noted", async () => {
    // ship2's replies may be delivered for 2 s only (maxMessageAge): what it sends while central is away expires.
    await fleet.add("ship2", { maxMessageAge: 2 });
    const central = fleet.node("central");
    const [id] = await fleet.sendOk("central", {
      toNode: "ship2",
      method: "cliCommandCont",
      methodArgs: ["bash", "-c", "for i in $(seq 1 60); do echo line $i; echo $i > gap.progress; sleep 0.2; done"],
      replyMethod: "fileAppend",
      directory: "gap",
      fileName: "out.log",
      methodTimeout: 120,
      // A missing part's re-sends are over within (1 + 1) × 1 s: the hold is its floor, 5 s.
      replyACKTimeout: 1,
      replyRetries: 1,
    });
    const file = join(central.dataFolder, "gap", "ship2", "out.log");
    await sleepUntil(() => existsSync(file), { what: "the first part on central" });
    await central.stop();
    // 15 more lines at 0.2 s each: what ship2 sent just after central left is past its 2 s by the time it is back.
    const progress = join(fleet.node("ship2").dataFolder, "gap.progress");
    const at = () => Number(readIfExists(progress) ?? 0);
    const stoppedAt = at();
    await sleepUntil(() => at() >= stoppedAt + 15, { what: "ship2's command to print 15 more lines" });
    const logFrom = readFileSync(central.logPath, "utf8").length;
    await central.start();
    // Parts are held now, stored but not written: a crash loses none of them, and they still go in order.
    await sleepUntil(
      () =>
        readFileSync(central.logPath, "utf8").slice(logFrom).includes("a streamed part waits for the parts before it"),
      { what: "a part held on central" },
    );
    await central.kill();
    const logAfterCrash = readFileSync(central.logPath, "utf8").length;
    await central.start();
    const m = await fleet.waitState("central", id as string, undefined, 60_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    const written = readFileSync(file, "utf8").trimEnd().split("\n");
    const notes = written.filter((l) => l.startsWith("[steward]"));
    assert.equal(notes.length, 1, written.join("\n"));
    assert.match(notes[0] as string, /^\[steward\] parts? \d+(-\d+)? of \S+ did not arrive within 5s$/);
    // The rest is in order, each line once, up to the last.
    const numbers = written.filter((l) => !l.startsWith("[steward]")).map((l) => Number(l.replace("line ", "")));
    assert.deepEqual(
      numbers,
      [...numbers].sort((a, b) => a - b),
    );
    assert.equal(new Set(numbers).size, numbers.length);
    assert.equal(numbers.at(-1), 60);
    assert.ok(numbers.length < 60, "the expired parts' lines are missing");
    assert.match(readFileSync(fleet.node("ship2").logPath, "utf8"), /message expired/);
    // The held parts came back from the store after the crash, still held behind the gap.
    assert.match(
      readFileSync(central.logPath, "utf8").slice(logAfterCrash),
      /a streamed part waits for the parts before it/,
    );
  });
});

describe("Replies.turn (the origin's order of parts, on its own store)", () => {
  const part = (seq: number, partial = true, rerun = false) =>
    newEnvelope({
      toNode: "central",
      fromNode: "ship1",
      method: "fileAppend",
      methodTimeout: 10,
      requestId: "req-1",
      deliverBy: Date.now() + 60_000,
      result: { exitCode: null, seq, ...(partial && { partial: true }), ...(rerun && { rerun: true }) },
      data: `line ${seq}`,
    });

  /** central's own store in a fresh folder, holding the request "req-1" the parts answer, and its Replies. */
  const turnStore = () => {
    const folder = mkdtempSync(join(tmpdir(), "steward-turn-"));
    const store = new Store(folder, "central");
    const replies = new Replies({
      nodeName: "central",
      store,
      log: createLogger("central", "error", () => undefined),
      reportError: () => undefined,
    });
    // The request the parts answer: its stored result is where the last part written is kept.
    store.outgoing.add(
      newEnvelope({
        id: "req-1",
        toNode: "ship1",
        fromNode: "central",
        method: "cliCommandCont",
        methodTimeout: 10,
        replyMethod: "fileAppend",
        deliverBy: Date.now() + 60_000,
      }),
    );
    return { folder, store, replies };
  };

  test("parts go in seq order whatever order they come in; one behind the cursor goes at once, marked late", async () => {
    const { folder, store, replies } = turnStore();
    const signal = new AbortController().signal;
    const order: number[] = [];
    // As the runner does: wait for the turn, run (here: note the order), store the outcome, release.
    const run = async (seq: number) => {
      const reply = part(seq, seq < 4);
      const turn = await replies.turn(reply, undefined, signal);
      assert.ok(turn);
      order.push(seq);
      await new Promise((r) => setImmediate(r));
      replies.storeOutcome(reply, undefined);
      await store.durable();
      turn.release();
      return turn.message;
    };
    try {
      await Promise.all([run(3), run(4), run(2), run(1)]);
      assert.deepEqual(order, [1, 2, 3, 4]);
      const late = await run(2);
      assert.match(
        late.data ?? "",
        /^\[steward\] part 2 of req-1 arrived late, after the parts that follow it\nline 2$/,
      );
      // A re-run on the target (after its restart) starts its parts from 1 again.
      const again = await replies.turn(part(1, true, true), undefined, signal);
      assert.equal(again?.message.data, "line 1");
    } finally {
      store.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
  test("a request cancelled here while its parts still come: they go on in order, none held or noted", async () => {
    const { folder, store, replies } = turnStore();
    const signal = new AbortController().signal;
    const run = async (seq: number) => {
      const reply = part(seq, seq < 4);
      const turn = await replies.turn(reply, undefined, signal);
      assert.ok(turn);
      replies.storeOutcome(reply, undefined);
      await store.durable();
      turn.release();
      return turn.message.data;
    };
    try {
      assert.equal(await run(1), "line 1");
      // steward cancel: final here, while the target has not yet heard of it and goes on sending parts.
      assert.ok(store.outgoing.moveToFinal("req-1", "cancelled", { reason: "cancelled by test@central" }));
      // Each part must find where the stream is, or the next would wait for one already written and be noted.
      assert.deepEqual([await run(2), await run(3), await run(4)], ["line 2", "line 3", "line 4"]);
      // Its last reply does not say cancelled: it had finished there first, and that result stands.
      assert.equal(store.outgoing.get("req-1")?.state, "done");
      assert.match(store.outgoing.get("req-1")?.reason ?? "", /before the cancel arrived/);
    } finally {
      store.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
