/**
 * Deadlines (docs/DELIVERY.md, "Deadlines"), against a real nats-server and real nodes: a message with the
 * operator's deliverBy waits for a target that is away longer than its retries and is delivered once it is
 * back; without one it still fails; past deliverBy it expires; one that reaches its target after its runBy, waits
 * there for a free run past it, or is resumed there after a restart past it, is not run and ends expired; and the
 * deadlines are signed.
 *
 * Each message asks for ACKTimeout 1 and retries 1: its retries are spent within seconds.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { methodSubscription } from "../src/delivery/subjects.js";
import { encode } from "../src/delivery/wire.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { cmd } from "../src/harness/runs.js";
import { Attacker, type Captured, frameBody, Metrics } from "./helpers/attack-helpers.js";

let fleet: Fleet;
let attacker: Attacker;
let ship1Metrics: Metrics;
let markers = "";

const quick = { ACKTimeout: 1, retries: 1 };
const marker = (name: string): string => join(markers, name);
const touch = (path: string): string[] => ["bash", "-c", `touch ${path}`];

before(async () => {
  const port = await freePort();
  fleet = await Fleet.start("deadlines", ["central"]);
  await Promise.all([
    fleet.add("ship1", { promHostAndPort: `127.0.0.1:${port}` }),
    // One run at a time: a second message waits there for a free run.
    fleet.add("ship2", { maxConcurrentRuns: 1 }),
  ]);
  ship1Metrics = new Metrics(port);
  attacker = await Attacker.connect(fleet.broker.url);
  markers = join(fleet.dir, "markers");
  mkdirSync(markers);
});

after(async () => {
  await attacker?.close();
  await fleet?.close();
});

describe("a target away for longer than its messages' retries", () => {
  const ids = { waits: "", fails: "", expires: "", late: "" };
  let runBy = 0;
  let lateFrames: Captured[] = [];

  before(async () => {
    await fleet.node("ship1").stop();
    // What central sends ship1 while it is away, as anyone on the broker sees it.
    const cap = attacker.capture(methodSubscription("ship1", "cliCommand"));
    lateFrames = cap.frames;
    const sent = Date.now();
    [ids.waits = "", ids.fails = "", ids.expires = "", ids.late = ""] = await fleet.sendOk("central", [
      cmd("ship1", touch(marker("waits")), { ...quick, deliverBy: "5m" }),
      cmd("ship1", touch(marker("fails")), quick),
      cmd("ship1", touch(marker("expires")), { ...quick, deliverBy: "3s" }),
      cmd("ship1", touch(marker("late")), { ...quick, deliverBy: 300, runBy: "3s" }),
    ]);
    runBy = sent + 3000;
  });

  test("without deliverBy it fails once its retries are spent, as before", async () => {
    const m = await fleet.waitState("central", ids.fails);
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.match(m.reason ?? "", /max retries reached/);
  });

  test("with a deliverBy of a few seconds it ends expired, saying so", async () => {
    const m = await fleet.waitState("central", ids.expires);
    assert.equal(m.state, "expired", JSON.stringify(m));
    assert.match(m.reason ?? "", /not delivered by .* \(deliverBy\)/);
  });

  test("with deliverBy it is not failed once its retries are spent: it is sent again, later", async () => {
    // Two attempts spend its retries; a third proves it went on waiting rather than fail.
    let m = await fleet.status("central", ids.waits);
    await sleepUntil(
      async () => {
        m = await fleet.status("central", ids.waits);
        assert.equal(m.state, "sent", JSON.stringify(m));
        return m.attempt >= 3;
      },
      { what: () => `a third attempt (last: ${JSON.stringify(m)})` },
    );
  });

  test("past its runBy when the target is back: answered expired, not run", async () => {
    await sleepUntil(() => Date.now() > runBy + 500, { what: "the runBy of the late message to pass" });
    await fleet.node("ship1").start();
    const m = await fleet.waitState("central", ids.late);
    assert.equal(m.state, "expired", JSON.stringify(m));
    assert.match(m.reason ?? "", /refused by ship1: expired: not run by .* \(runBy\)/);
    assert.equal(existsSync(marker("late")), false);
  });

  test("with deliverBy it is delivered and done once the target is back", async () => {
    const m = await fleet.waitState("central", ids.waits, undefined, 60_000);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(existsSync(marker("waits")), true);
    assert.equal(existsSync(marker("fails")), false);
  });

  test("deliverBy, runBy and deliverByGiven are signed: a frame with any of them changed is dropped unanswered", async () => {
    const genuine = lateFrames.find((f) => frameBody(f.data).id === ids.late);
    assert.ok(genuine, "a frame of the late message was captured");
    const body = frameBody(genuine.data);
    assert.equal(body.deliverByGiven, true);
    assert.equal(typeof body.runBy, "number");
    const header = genuine.data.subarray(0, genuine.data.indexOf(10) + 1);
    const { deliverByGiven: _, ...notGiven } = body;
    const later = Date.now() + 3_600_000;
    const variants = [{ ...body, runBy: later }, { ...body, deliverBy: later }, notGiven].map((v) =>
      Buffer.concat([header, encode(v)]),
    );
    const sent = await ship1Metrics.dropsDuring({ "bad signature": variants.length }, () =>
      Promise.all(variants.map((bytes) => attacker.request(genuine.subject, bytes))),
    );
    // A later legitimate message has gone through: ship1 has handled the forged ones before it.
    const [id] = await fleet.sendOk("central", cmd("ship1", ["true"], quick));
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
    for (const s of sent) assert.equal(s.answers.length, 0);
    assert.equal(existsSync(marker("late")), false);
  });
});

describe("a target whose one run is taken (maxConcurrentRuns 1)", () => {
  let busy = "";

  before(async () => {
    // ship2 runs one method at a time: this one holds its only run while the others wait past their runBy.
    [busy = ""] = await fleet.sendOk(
      "central",
      cmd("ship2", ["sleep", "60"], { ACKTimeout: 5, retries: 1, methodTimeout: 90 }),
    );
    await fleet.waitState("central", busy, "running");
  });

  test("a message still waiting there for a free run when its runBy passes is not run: it ends expired", async () => {
    const [id = ""] = await fleet.sendOk(
      "central",
      cmd("ship2", touch(marker("waited")), { ACKTimeout: 5, retries: 1, runBy: "3s" }),
    );
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "expired", JSON.stringify(m));
    assert.match(m.reason ?? "", /not run by .* \(runBy\)/);
    assert.equal(existsSync(marker("waited")), false);
    assert.equal((await fleet.status("central", busy)).state, "running");
  });

  test("a stored message that the target resumes after a restart past its runBy is not run: it ends expired", async () => {
    const sent = Date.now();
    const [id = ""] = await fleet.sendOk(
      "central",
      cmd("ship2", touch(marker("resumed")), { ACKTimeout: 5, retries: 1, runBy: "4s" }),
    );
    await fleet.waitState("central", id, "waiting");
    await fleet.node("ship2").stop();
    await sleepUntil(() => Date.now() > sent + 4500, { what: "the runBy of the stored message to pass" });
    await fleet.node("ship2").start();
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "expired", JSON.stringify(m));
    assert.match(m.reason ?? "", /not run by .* \(runBy\)/);
    assert.equal(existsSync(marker("resumed")), false);
  });
});

test("deliverBy and runBy that are past, malformed or too far ahead are refused, naming the field", async () => {
  const answers = await fleet.send("central", [
    cmd("ship1", ["true"], { deliverBy: "2001-01-01T00:00:00Z" }),
    cmd("ship1", ["true"], { runBy: "soon" }),
    cmd("ship1", ["true"], { deliverBy: "400d" }),
    cmd("ship1", ["true"], { deliverBy: 0 }),
  ]);
  const errors = answers.map((a) => (a.ok ? "" : a.error));
  assert.match(errors[0] ?? "", /deliverBy.*already past/);
  assert.match(errors[1] ?? "", /runBy.*expected a time like/);
  assert.match(errors[2] ?? "", /deliverBy.*maxDeliverBy/);
  assert.match(errors[3] ?? "", /deliverBy.*already past/);
});
