/**
 * Limits at the receiving end and on error reports, against real node
 * processes: at most maxConcurrentRuns methods run at once (the rest wait in
 * arrival order, and their origin sees them waiting); one sender cannot make a
 * node store more than its share (answered busy, re-sent later without
 * spending a retry); error reports are coalesced, and bounded while central is
 * away; methodTimeout -1 from the wire only when the rules allow it.
 *
 * Two fleets: "limits" (central; ship1 runs 2 methods at once and coalesces
 * its errors over 2 s; ship2 stores 1 message a second per sender after a
 * burst of 3; ship3 sends legitimately; "rogue" is a key of the test's own on a
 * raw NATS connection) and "away" (whose central is stopped while ship1 keeps
 * at most 3 error reports waiting).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listMessages, query } from "../src/client/client.js";
import { methodSubject } from "../src/delivery/subjects.js";
import { Fleet, type Peer, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { newId } from "../src/message/id.js";
import type { Envelope } from "../src/message/message.js";
import type { Identity } from "../src/security/identity.js";
import { Attacker, Metrics, openAnswer, type Sent } from "./helpers/attack-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

let fleet: Fleet;
let away: Fleet;
let rogue: Peer;
let attacker: Attacker;
let ship2Metrics: Metrics;
let awayMetrics: Metrics;

before(async () => {
  const [p1, p2] = await Promise.all([freePort(), freePort()]);
  await Promise.all([
    Fleet.start("limits", ["central"]).then((f) => (fleet = f)),
    Fleet.start("away", ["central"]).then((f) => (away = f)),
  ]);
  await Promise.all([
    fleet.add("ship1", { maxConcurrentRuns: 2, errorReportWindow: 2 }),
    fleet.add("ship2", { maxMessagesPerSender: 1, maxMessagesPerSenderBurst: 3, promHostAndPort: `127.0.0.1:${p1}` }),
    fleet.add("ship3"),
    away.add("ship1", { maxErrorReportsWaiting: 3, errorMessageTimeout: 1, promHostAndPort: `127.0.0.1:${p2}` }),
  ]);
  ship2Metrics = new Metrics(p1);
  awayMetrics = new Metrics(p2);
  rogue = await fleet.peer("rogue");
  attacker = await Attacker.connect(fleet.broker.url);
  const { bundle } = await query(fleet.node("central").socketPath, "setAcl", {
    acl: {
      rules: [
        { from: ["central"], methods: ["*"], to: ["*"] },
        { from: ["*"], methods: ["hello", "errorLog", "ping"], to: ["*"] },
        { from: ["*"], methods: ["cliCommand"], to: ["self"] },
        { from: ["rogue"], methods: ["cliCommand"], to: ["ship2"] },
        { from: ["ship3"], methods: ["cliCommand"], to: ["ship2"], unlimited: true },
      ],
    },
  });
  await fleet.waitBundle(bundle);
});

after(async () => {
  await attacker?.close();
  await Promise.allSettled([fleet?.close(), away?.close()]);
});

/** The rogue's request to `to`, signed with its admitted key, on the method's subject. */
function fromRogue(to: string, fields: Partial<Envelope>): Promise<Sent> {
  const message = envelope({ id: newId(), fromNode: rogue.name, toNode: to, ...fields });
  const subject = methodSubject(to, message.method, rogue.name);
  return attacker.request(subject, rogue.seal(subject, message));
}

/** The answer `to` gave, checked against its key. */
async function answerOf(sent: Sent, to: string): Promise<Record<string, unknown>> {
  const signer = { name: to, publicKey: await publicKeyOf(to) } as Identity;
  return openAnswer(await attacker.answer(sent), signer) as Record<string, unknown>;
}

async function publicKeyOf(name: string): Promise<string> {
  const { keys } = await query(fleet.node("central").socketPath, "keys", {});
  const key = keys.find((k) => k.name === name);
  if (!key) throw new Error(`no key for ${name}`);
  return key.publicKey;
}

test("more runs than maxConcurrentRuns: two run at once, the others wait (shown on the origin) and run in arrival order", async () => {
  const log = join(fleet.dir, "runs.log");
  const go = join(fleet.dir, "go");
  const ids: string[] = [];
  for (let n = 1; n <= 5; n++) {
    // Each run writes its start and end, and holds its run until the test says go to it: one run ends at a
    // time, so that one slot frees at a time and the run that takes it is the only one to start then.
    const script = `echo start ${n} >> ${log}; while [ ! -e ${go}-${n} ]; do sleep 0.05; done; echo end ${n} >> ${log}`;
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["bash", "-c", script],
      methodTimeout: 120,
      replyMethod: "none",
    });
    ids.push(id as string);
    // One at a time, so that their order of arrival on ship1 is the order sent.
    await sleepUntil(async () => !["queued", "sent"].includes((await fleet.status("central", id as string)).state), {
      what: `message ${n} to reach ship1`,
    });
  }
  const waiting = ids.slice(2);
  await sleepUntil(
    async () =>
      (await Promise.all(waiting.map((id) => fleet.status("central", id)))).every((m) => m.state === "waiting"),
    { what: "messages 3 to 5 to show waiting on central" },
  );
  const starts = () =>
    readFileSync(log, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("start"));
  await sleepUntil(() => existsSync(log) && starts().length === 2, { what: "the first two runs to start" });
  assert.deepEqual(starts(), ["start 1", "start 2"], "only the first two run while the others wait");

  // Run 1 ends: its slot goes to the first that arrived of those waiting (3), and so on.
  for (let n = 1; n <= 5; n++) {
    writeFileSync(`${go}-${n}`, "");
    if (n <= 3) await sleepUntil(() => starts().length === n + 2, { what: `a run to start once run ${n} has ended` });
  }
  for (const id of ids) assert.equal((await fleet.waitState("central", id)).state, "done");

  const lines = readFileSync(log, "utf8").trim().split("\n");
  let running = 0;
  let most = 0;
  for (const line of lines) {
    running += line.startsWith("start") ? 1 : -1;
    most = Math.max(most, running);
  }
  assert.equal(most, 2, `at most 2 ran at once:\n${lines.join("\n")}`);
  assert.deepEqual(
    lines.filter((l) => l.startsWith("start")),
    ["start 1", "start 2", "start 3", "start 4", "start 5"],
    "the waiting runs started in arrival order",
  );
});

test("methodTimeout -1 from a sender no rule grants it is refused; from central, an unlimited rule or the node itself it runs", async () => {
  const sent = await fromRogue("ship2", { methodArgs: ["true"], methodTimeout: -1 });
  const answer = await answerOf(sent, "ship2");
  assert.match(String(answer.refused), /^not allowed: rogue may not run cliCommand on ship2 without a time limit/);
  // A time limit of weeks is as good as none: above maxMethodTimeout (a day by default) the same rule holds.
  const weeks = await answerOf(await fromRogue("ship2", { methodArgs: ["true"], methodTimeout: 2_000_000 }), "ship2");
  assert.match(String(weeks.refused), /without a time limit \(methodTimeout above maxMethodTimeout 86400 s there\)/);
  const day = await answerOf(await fromRogue("ship2", { methodArgs: ["true"], methodTimeout: 86_400 }), "ship2");
  assert.deepEqual(Object.keys(day), ["ack"], JSON.stringify(day));

  const ids = await Promise.all(
    ["central", "ship3", "ship2"].map(async (from) => {
      const [id] = await fleet.sendOk(from, {
        toNode: "ship2",
        method: "cliCommand",
        methodArgs: ["true"],
        methodTimeout: -1,
        replyMethod: "none",
      });
      return [from, id as string] as const;
    }),
  );
  for (const [from, id] of ids) {
    const m = await fleet.waitState(from, id);
    assert.equal(m.state, "done", `from ${from}: ${JSON.stringify(m)}`);
  }
});

test("the same refusal many times reaches central's error log as one line and one with how many more", async () => {
  const sent = await Promise.all(Array.from({ length: 10 }, () => fromRogue("ship1", { method: "opProcessList" })));
  for (const s of sent) assert.ok("refused" in (await answerOf(s, "ship1")));
  const file = join(fleet.node("central").dataFolder, "errorLog", "ship1", "errorLog.log");
  const lines = () =>
    (existsSync(file) ? readFileSync(file, "utf8") : "")
      .split("\n")
      .filter((l) => l.includes("not allowed: rogue may not call opProcessList on ship1"));
  const counted = () =>
    lines().reduce((n, l) => n + 1 + Number(/\(and (\d+) more like this in the last/.exec(l)?.[1] ?? 0), 0);
  await sleepUntil(() => counted() >= 10, {
    timeoutMs: 30_000,
    what: () => `10 refusals counted (${lines().join(" | ")})`,
  });
  assert.equal(counted(), 10, lines().join("\n"));
  assert.ok(lines().length < 10, `coalesced into fewer lines:\n${lines().join("\n")}`);
  assert.ok(
    lines().some((l) => / \(and \d+ more like this in the last 2 s\)$/.test(l)),
    lines().join("\n"),
  );
});

test("a flood from one sender is stored up to its share; the rest is answered busy and not stored", async () => {
  const started = Date.now();
  const sent = await Promise.all(
    Array.from({ length: 30 }, (_, i) => fromRogue("ship2", { method: "errorLog", data: `flood ${i}` })),
  );
  const answers = await Promise.all(sent.map((s) => answerOf(s, "ship2")));
  const seconds = Math.ceil((Date.now() - started) / 1000);
  const acked = answers.filter((a) => "ack" in a).length;
  const busy = answers.filter((a) => typeof a.busy === "number" && a.busy > 0).length;
  assert.equal(acked + busy, 30, JSON.stringify(answers));
  // A burst of 3, then 1 a second for as long as the flood lasted.
  assert.ok(acked <= 3 + seconds + 1, `${acked} stored in ${seconds} s`);
  assert.ok(busy >= 1);
  assert.equal(await ship2Metrics.value('steward_messages_busy_total{from_node="rogue"}'), busy);
  const file = join(fleet.node("ship2").dataFolder, "errorLog", "rogue", "errorLog.log");
  const stored = () => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").length : 0);
  await sleepUntil(() => stored() === acked, { what: () => `${acked} stored flood messages run (${stored()})` });
});

test("a legitimate sender over its share gets every message through, with no retry spent on busy", async () => {
  const busyBefore = await ship2Metrics.value('steward_messages_busy_total{from_node="ship3"}');
  const ids = await fleet.sendOk(
    "ship3",
    Array.from({ length: 8 }, () => ({ toNode: "ship2", method: "ping", ACKTimeout: 5, retries: 0 })),
  );
  const done = await Promise.all(ids.map((id) => fleet.waitState("ship3", id, undefined, 60_000)));
  for (const m of done) assert.equal(m.state, "done", JSON.stringify(m));
  assert.ok(
    (await ship2Metrics.value('steward_messages_busy_total{from_node="ship3"}')) > busyBefore,
    "ship2 answered busy",
  );
  assert.ok(
    done.some((m) => m.attempt > 1),
    `re-sent after busy, with retries 0: ${done.map((m) => m.attempt).join(", ")}`,
  );
});

test("while central is away, the error reports waiting for it are bounded: the oldest are dropped and counted", async () => {
  const central = away.node("central");
  const ship1 = away.node("ship1");
  await central.stop();
  // Eight different errors (each to another node): none is like another, so none is coalesced.
  const ids = await away.sendOk(
    "ship1",
    "abcdefgh".split("").map((c) => ({
      toNode: `ghost-${c}`,
      method: "cliCommand",
      methodArgs: ["true"],
      ACKTimeout: 1,
      retries: 0,
    })),
  );
  for (const id of ids) assert.equal((await away.waitState("ship1", id)).state, "failed");
  await sleepUntil(async () => (await awayMetrics.value("steward_error_reports_dropped_total")) >= 5, {
    what: "5 error reports dropped",
  });
  const reports = (await listMessages(ship1.socketPath, 50)).filter((m) => m.method === "errorLog");
  const waiting = reports.filter((m) => m.state === "queued" || m.state === "sent");
  assert.equal(waiting.length, 3, JSON.stringify(reports.map((m) => [m.state, m.reason])));
  assert.equal(reports.filter((m) => m.state === "failed" && /maxErrorReportsWaiting/.test(m.reason ?? "")).length, 5);
  const logLines = readFileSync(ship1.logPath, "utf8")
    .split("\n")
    .filter((l) => l.includes("error reports waiting for central are too many"));
  assert.equal(logLines.length, 1, logLines.join("\n"));

  await central.start();
  await sleepUntil(
    async () =>
      (await listMessages(ship1.socketPath, 50)).every(
        (m) => m.method !== "errorLog" || (m.state !== "queued" && m.state !== "sent"),
      ),
    { what: "the 3 kept reports delivered" },
  );
  // Delivered means stored and ACKed there: central writes its error log just after, so the lines may come a moment later.
  const file = join(central.dataFolder, "errorLog", "ship1", "errorLog.log");
  const delivered = () =>
    existsSync(file)
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l.includes("toNode: ghost-"))
      : [];
  await sleepUntil(() => delivered().length >= 3, {
    what: () => `central to write the 3 reports: ${delivered().join(" | ")}`,
  });
  assert.equal(delivered().length, 3, delivered().join("\n"));
});
