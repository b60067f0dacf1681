/**
 * Messages larger than the broker's max_payload (docs/DELIVERY.md, "Size"): real nodes on a broker that takes
 * 1 MB per message. A 50 MiB result comes back whole through a broker killed mid-transfer; a 20 MiB file
 * request goes out whole; forged and garbage chunks come to nothing and are not kept beyond the bounds; past
 * maxMessageSize the reply is cut with a marker, and a request is refused with a reason. A request cancelled
 * mid-send sends no more chunks and never runs; a graceful stop mid-send does not wait for a target that does
 * not answer, and the send goes on after the restart; messages completing together beyond the two put back
 * together at once are told busy and still run once, whole.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listMessages } from "../src/client/client.js";
import { chunkSizeFor, type ChunkHead } from "../src/delivery/chunks.js";
import { chunkSubject, methodSubject } from "../src/delivery/subjects.js";
import { encode } from "../src/delivery/wire.js";
import { Fleet, sleepUntil, type Peer } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { newId } from "../src/message/id.js";
import { readHeader, seal } from "../src/security/frame.js";
import { Attacker, frameBody, Metrics, nodeIdentity, openAnswer } from "./helpers/attack-helpers.js";
import { runCli } from "./helpers/cli-helpers.js";
import { envelope } from "./helpers/delivery-helpers.js";

const MiB = 1024 * 1024;
let fleet: Fleet;
let ship1Metrics: Metrics;
let markers = "";

const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex");
const ship1Key = () => nodeIdentity(fleet.node("ship1"));
const chunkSets = (node: string, from: string): string[] => {
  const dir = join(fleet.node(node).opts.dir, "var", "chunks", from);
  return existsSync(dir) ? readdirSync(dir) : [];
};

before(async () => {
  const conf = join(tmpdir(), `steward-chunks-${process.pid}.conf`);
  writeFileSync(conf, "max_payload: 1MB\n");
  const port = await freePort();
  fleet = await Fleet.start("chunks", [], {}, { brokerArgs: ["-c", conf] });
  await fleet.add("central", { maxInputBytes: 64 * MiB });
  await fleet.add("ship1", { promHostAndPort: `127.0.0.1:${port}` });
  await fleet.add("ship2", { maxMessageSize: 2 * MiB });
  await fleet.add("ship3");
  ship1Metrics = new Metrics(port);
  await fleet.allowAll();
  markers = join(fleet.dir, "markers");
  mkdirSync(markers);
});
after(() => fleet?.close());

test("a 50 MiB result comes back whole in chunks, through a broker killed and restarted mid-transfer", async () => {
  const produced = join(fleet.node("ship1").dataFolder, "produced.txt");
  // 37.5 MiB of random bytes in base64: 50 MiB of output, and a newline.
  const script = `mkdir -p $(dirname ${produced}) && head -c 39321600 /dev/urandom | base64 -w0 > ${produced} && echo >> ${produced} && cat ${produced}`;
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "cliCommand",
    methodArgs: ["bash", "-c", script],
    replyMethod: "file",
    directory: "results",
    fileName: "big.txt",
    ACKTimeout: 10,
    retries: 3,
    methodTimeout: 120,
    replyACKTimeout: 3,
    replyRetries: 30,
    retryWait: 1,
  });
  // Some chunks of the reply are on central's disk, not all: the transfer is under way.
  await sleepUntil(() => readdirSync(join(fleet.node("central").opts.dir, "var", "chunks")).length > 0, {
    timeoutMs: 60_000,
    intervalMs: 20,
    what: "the first chunks of the reply on central",
  });
  await sleepUntil(
    () => {
      const [set] = chunkSets("central", "ship1");
      const dir = join(fleet.node("central").opts.dir, "var", "chunks", "ship1", set ?? "none");
      return existsSync(dir) && readdirSync(dir).filter((f) => /^\d+$/.test(f)).length >= 5;
    },
    { timeoutMs: 60_000, intervalMs: 20, what: "five chunks of the reply on central" },
  );
  await fleet.broker.kill();
  await fleet.broker.restart();

  const view = await fleet.waitState("central", id as string, undefined, 150_000);
  assert.equal(view.state, "done", JSON.stringify({ ...view, result: undefined }));
  const written = readFileSync(join(fleet.node("central").dataFolder, "results", "ship1", "big.txt"));
  const original = readFileSync(produced);
  assert.equal(original.length, 50 * MiB + 1, "the command wrote 50 MiB and a newline");
  assert.equal(written.length, original.length, "the origin wrote all of it");
  assert.equal(sha256(written), sha256(original), "byte for byte");
  assert.equal(view.result?.truncated, undefined, "nothing cut");
  await sleepUntil(() => chunkSets("central", "ship1").length === 0, { what: "central to delete the chunks" });
});

test("a 20 MiB file request is accepted and written whole on its target", async () => {
  const data = randomBytes(15 * MiB).toString("base64");
  assert.equal(data.length, 20 * MiB);
  const [id] = await fleet.sendOk("central", {
    toNode: "ship1",
    method: "file",
    directory: "in",
    fileName: "big.b64",
    data,
    ACKTimeout: 10,
    retries: 5,
  });
  const view = await fleet.waitState("central", id as string, undefined, 120_000);
  assert.equal(view.state, "done", JSON.stringify(view));
  const written = readFileSync(join(fleet.node("ship1").dataFolder, "in", "central", "big.b64"));
  assert.equal(sha256(written), sha256(`${data}\n`));
});

/** The chunks of `whole` for `to` as `from` would send them, `head` fields overridden. */
function chunksOf(
  from: Peer,
  whole: Uint8Array,
  id: string,
  head: Partial<ChunkHead> = {},
  to = "ship1",
): Uint8Array[] {
  const chunkSize = chunkSizeFor(MiB);
  const count = Math.ceil(whole.length / chunkSize);
  const subject = chunkSubject(to, from.name);
  const deliverBy = Date.now() + 3_600_000;
  return Array.from({ length: count }, (_, seq) => {
    const h: ChunkHead = {
      chunkOf: id,
      method: "cliCommand",
      seq,
      count,
      size: whole.length,
      chunkSize,
      sha256: sha256(whole),
      deliverBy,
      ...head,
    };
    const part = whole.subarray(seq * chunkSize, (seq + 1) * chunkSize);
    return seal(from.identity, subject, Buffer.concat([Buffer.from(`${JSON.stringify(h)}\n`), part]));
  });
}

test("forged and garbage chunks run nothing and are not kept beyond the bounds", async () => {
  const attacker = await Attacker.connect(fleet.broker.url);
  try {
    const mallory = await fleet.peer("mallory");
    const subject = chunkSubject("ship1", "mallory");
    const marker = join(markers, "ran");
    // A real request that would touch the marker, padded above max_payload.
    const request = (to: string, id: string) =>
      envelope({
        id,
        fromNode: "mallory",
        toNode: to,
        methodArgs: ["bash", "-c", `touch ${marker}`],
        data: "x".repeat(2 * MiB),
      });

    // No key at all, and garbage signed by an admitted key.
    await ship1Metrics.dropsDuring({ unsigned: 1, "bad chunk": 2 }, async () => {
      await attacker.request(subject, randomBytes(1000));
      await attacker.request(subject, seal(mallory.identity, subject, randomBytes(1000)));
      await attacker.request(subject, seal(mallory.identity, subject, encode({ chunkOf: "x", seq: 0 })));
    });

    // A whole set whose bytes do not match its sha256: dropped once complete, its chunks deleted.
    const id1 = newId();
    const whole1 = seal(
      mallory.identity,
      methodSubject("ship1", "cliCommand", "mallory"),
      encode(request("ship1", id1)),
    );
    const bad1 = chunksOf(mallory, whole1, id1, { sha256: sha256("something else") });
    await ship1Metrics.dropsDuring({ "bad chunk": 1 }, async () => {
      for (const c of bad1) await attacker.request(subject, c);
    });

    // A whole set that matches its sha256 but was signed for ship2's subject: the inbox's signature check drops it.
    const id2 = newId();
    const whole2 = seal(
      mallory.identity,
      methodSubject("ship2", "cliCommand", "mallory"),
      encode(request("ship1", id2)),
    );
    await ship1Metrics.dropsDuring({ "bad signature": 1 }, async () => {
      for (const c of chunksOf(mallory, whole2, id2)) await attacker.request(subject, c);
    });

    // More than maxMessageSize: refused, nothing written.
    const [big] = chunksOf(mallory, whole1, newId(), {
      size: 200 * MiB,
      count: Math.ceil((200 * MiB) / chunkSizeFor(MiB)),
    });
    const refused = await attacker.answer(await attacker.request(subject, big as Uint8Array));
    assert.match(String((openAnswer(refused, ship1Key()) as { refused?: string }).refused), /maxMessageSize/);
    await sleepUntil(() => chunkSets("ship1", "mallory").length === 0, {
      what: "nothing kept of the bad sets, nor of the one too large",
    });

    // Bounds: first chunks of many messages; only MAX_SETS_PER_SENDER are kept, the rest are told busy.
    const answers: unknown[] = [];
    for (let i = 0; i < 6; i++) {
      const id = newId();
      const whole = seal(
        mallory.identity,
        methodSubject("ship1", "cliCommand", "mallory"),
        encode(request("ship1", id)),
      );
      const [first] = chunksOf(mallory, whole, id);
      answers.push(openAnswer(await attacker.answer(await attacker.request(subject, first as Uint8Array)), ship1Key()));
    }
    assert.equal(
      answers.filter((a) => (a as { chunk?: string }).chunk !== undefined).length,
      4,
      JSON.stringify(answers),
    );
    assert.equal(answers.filter((a) => typeof (a as { busy?: number }).busy === "number").length, 2);
    assert.equal(chunkSets("ship1", "mallory").length, 4, "four incomplete sets on disk, no more");

    // A legitimate message after all that still goes through; nothing of mallory's ran.
    const [ok] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: ["true"] });
    assert.equal((await fleet.waitState("central", ok as string)).state, "done");
    assert.equal(existsSync(marker), false, "no forged command ran");
  } finally {
    await attacker.close();
  }
});

test("partial sets of all senders stay within the disk budget, private, and a replacing set keeps its own folder", async () => {
  // ship2 takes 2 MiB messages: its partial sets may claim 4 × 2 MiB. Each set here claims a little more than
  // 2 MiB (three chunks), so a fourth from the same sender (which the per-sender bound would take) is busy.
  const attacker = await Attacker.connect(fleet.broker.url);
  try {
    const trudy = await fleet.peer("trudy");
    const eve = await fleet.peer("eve");
    const ship2Key = nodeIdentity(fleet.node("ship2"));
    const size = 2 * MiB + 32 * 1024;
    const send = async (from: Peer, chunk: Uint8Array | undefined) =>
      openAnswer(
        await attacker.answer(await attacker.request(chunkSubject("ship2", from.name), chunk as Uint8Array)),
        ship2Key,
      ) as { chunk?: string; busy?: number };
    const sets = Array.from({ length: 4 }, () => ({ id: newId(), whole: randomBytes(size) }));
    // The second set's sha256 is wrong: completing it frees its share of the budget.
    const chunks = sets.map((s, i) =>
      chunksOf(trudy, s.whole, s.id, i === 1 ? { sha256: sha256("other") } : {}, "ship2"),
    );
    for (const c of chunks.slice(0, 3)) assert.equal((await send(trudy, c[0])).chunk !== undefined, true);
    assert.equal(typeof (await send(trudy, chunks[3]?.[0])).busy, "number", "past the budget: busy");
    const other = newId();
    const eves = chunksOf(eve, randomBytes(size), other, {}, "ship2");
    assert.equal(typeof (await send(eve, eves[0])).busy, "number", "the budget is the node's, not the sender's");
    assert.equal(chunkSets("ship2", "trudy").length, 3);
    assert.equal(chunkSets("ship2", "eve").length, 0, "nothing kept of a set told busy");

    // Partial sets are private, whatever the umask of the moment.
    const setDir = join(fleet.node("ship2").opts.dir, "var", "chunks", "trudy", chunkSets("ship2", "trudy")[0] ?? "");
    assert.equal(statSync(setDir).mode & 0o777, 0o700);
    for (const f of readdirSync(setDir)) assert.equal(statSync(join(setDir, f)).mode & 0o777, 0o600, f);

    // Another version of the first message (the same id, other bytes) replaces it: all its chunks are
    // stored and ACKed (none lost to the old set's deletion), in a folder of its own.
    const first = sets[0] as { id: string };
    const again = chunksOf(trudy, randomBytes(size), first.id, {}, "ship2");
    for (const c of again.slice(0, 2)) assert.equal((await send(trudy, c)).chunk, first.id);
    await sleepUntil(() => chunkSets("ship2", "trudy").length === 3, { what: "the replaced set deleted" });
    const heads = chunkSets("ship2", "trudy").map((d) => {
      const dir = join(fleet.node("ship2").opts.dir, "var", "chunks", "trudy", d);
      return { head: JSON.parse(readFileSync(join(dir, "head.json"), "utf8")) as ChunkHead, files: readdirSync(dir) };
    });
    const replaced = heads.find((h) => h.head.chunkOf === first.id);
    assert.ok(replaced, "the replacing set is on disk");
    assert.deepEqual(replaced.files.filter((f) => /^\d+$/.test(f)).sort(), ["0", "1"]);

    // The bad set completes and is dropped: its share is free again, and the set told busy is taken now.
    for (const c of (chunks[1] ?? []).slice(1)) await attacker.request(chunkSubject("ship2", "trudy"), c);
    await sleepUntil(() => chunkSets("ship2", "trudy").length === 2, { what: "the bad set deleted" });
    assert.equal((await send(eve, eves[0])).chunk, other, "taken once the budget has room");
  } finally {
    await attacker.close();
  }
});

test("past maxMessageSize a reply is cut with a marker, and a request is refused with the reason", async () => {
  // ship2 keeps at most 2 MiB: its 3 MiB of output is cut, and the result says by how much.
  const [id] = await fleet.sendOk("central", {
    toNode: "ship2",
    method: "cliCommand",
    methodArgs: ["bash", "-c", "head -c 3145728 /dev/zero | tr '\\0' a"],
    methodTimeout: 60,
  });
  const view = await fleet.waitState("central", id as string, undefined, 60_000);
  assert.equal(view.state, "done");
  assert.ok((view.result?.truncated ?? 0) >= MiB, JSON.stringify({ ...view.result, data: undefined }));

  // A 3 MiB request for ship2, which takes no more than 2 MiB: failed, and the reason says why.
  const [id2] = await fleet.sendOk("central", {
    toNode: "ship2",
    method: "file",
    fileName: "big.txt",
    data: "b".repeat(3 * MiB),
    ACKTimeout: 10,
  });
  const failed = await fleet.waitState("central", id2 as string, undefined, 60_000);
  assert.equal(failed.state, "failed");
  assert.match(failed.reason ?? "", /maxMessageSize/);
});

/** The chunk files of message `id` from `from` on `node`'s disk (none: its set is not there). */
function chunksOnDisk(node: string, from: string, id: string): number {
  const base = join(fleet.node(node).opts.dir, "var", "chunks", from);
  for (const set of chunkSets(node, from)) {
    try {
      const head = JSON.parse(readFileSync(join(base, set, "head.json"), "utf8")) as ChunkHead;
      if (head.chunkOf === id) return readdirSync(join(base, set)).filter((f) => /^\d+$/.test(f)).length;
    } catch {
      // Being written or deleted right now.
    }
  }
  return 0;
}

/** The heads of message `id`'s chunks among `frames` (seen on the broker). */
function headsOf(frames: { data: Uint8Array }[], id: string): ChunkHead[] {
  return frames
    .map((f) => {
      const body = readHeader(f.data)?.body ?? new Uint8Array();
      return JSON.parse(Buffer.from(body.subarray(0, body.indexOf(10))).toString("utf8")) as ChunkHead;
    })
    .filter((h) => h.chunkOf === id);
}

/** How many of message `id`'s chunks went out, each counted once, and of how many. */
function sentOf(frames: { data: Uint8Array }[], id: string): { sent: number; count: number } {
  const heads = headsOf(frames, id);
  return { sent: new Set(heads.map((h) => h.seq)).size, count: heads[0]?.count ?? Infinity };
}

/** Hold `node` (SIGSTOP): it answers nothing until `resume` (SIGCONT), though its broker link stays open. */
const appended = (node: string, from: string, name: string): string =>
  join(fleet.node(node).dataFolder, "in", from, name);

/** Central appends 20 MiB to `fileName` on ship1; resolves once three of its chunks are on ship1's disk. */
async function underWay(fileName: string, ACKTimeout: number): Promise<{ id: string; data: string }> {
  const data = randomBytes(15 * MiB).toString("base64");
  const [id] = (await fleet.sendOk("central", {
    toNode: "ship1",
    method: "fileAppend",
    directory: "in",
    fileName,
    data,
    ACKTimeout,
    retries: 5,
    replyMethod: "none",
  })) as [string];
  await sleepUntil(() => chunksOnDisk("ship1", "central", id) >= 3, {
    timeoutMs: 60_000,
    intervalMs: 10,
    what: "three chunks of the request on ship1",
  });
  return { id, data };
}

test("a chunked request cancelled mid-send: no further chunk goes out, and it never runs on its target", async () => {
  const observer = await Attacker.connect(fleet.broker.url);
  const seen = observer.capture(chunkSubject("ship1", "central"));
  await seen.ready;
  let thaw: (() => void) | undefined;
  try {
    const { id } = await underWay("cancelled.b64", 60);
    // ship1 answers no chunk now: central waits on those in flight.
    thaw = fleet.node("ship1").freeze();
    const out = await runCli(["cancel", id, "--socket-folder", join(fleet.node("central").opts.dir, "tmp")]);
    assert.equal(out.stdout, `${id} cancelled\n`, out.stderr);
    assert.equal((await fleet.status("central", id)).state, "cancelled");
    thaw();
    thaw = undefined;

    // Settled: ship1 has the signed cancel that followed the message, and deleted the chunks that went out
    // before it (those it took before the cancel, and those that came after it, ACKed and not kept).
    const cancels = (await listMessages(fleet.node("central").socketPath)).filter(
      (v) => v.method === "cancel" && v.toNode === "ship1",
    );
    assert.equal(cancels.length, 1, JSON.stringify(cancels));
    assert.equal((await fleet.waitState("central", (cancels[0] as { id: string }).id)).state, "done");
    await sleepUntil(() => chunksOnDisk("ship1", "central", id) === 0, {
      what: () => `ship1 to delete the cancelled message's chunks (${chunksOnDisk("ship1", "central", id)} left)`,
    });
    const { sent, count } = sentOf(seen.frames, id);
    assert.ok(sent > 0 && sent < count, `${sent} of ${count} chunks went out`);

    // Restarted, ship1 still does not run it, and central sends none of its chunks again.
    await fleet.node("ship1").stop();
    await fleet.node("ship1").start();
    const [ok] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: ["true"] });
    assert.equal((await fleet.waitState("central", ok as string)).state, "done");
    assert.equal(sentOf(seen.frames, id).sent, sent, "no chunk of the cancelled message after the cancel");
    assert.equal(chunksOnDisk("ship1", "central", id), 0, "none of its chunks kept on ship1");
    assert.equal(existsSync(appended("ship1", "central", "cancelled.b64")), false, "it never ran on ship1");
    assert.equal((await fleet.status("central", id)).state, "cancelled");
  } finally {
    thaw?.();
    seen.stop();
    await observer.close();
  }
});

test("a graceful stop of the origin mid-send, its target not answering, ends promptly; restarted, it goes on and the request runs once, whole", async () => {
  const central = fleet.node("central");
  const { id, data } = await underWay("resumed.b64", 120);
  const thaw = fleet.node("ship1").freeze();
  try {
    // Chunks in flight get no answer: the stop does not wait out their ACKTimeout.
    let exited = false;
    const stopped = central.stop().then(() => (exited = true));
    await sleepUntil(() => exited, { timeoutMs: 30_000, what: "central to exit after SIGTERM" });
    await stopped;
  } finally {
    thaw();
  }
  await central.start();
  const view = await fleet.waitState("central", id, undefined, 120_000);
  assert.equal(view.state, "done", JSON.stringify(view));
  const written = readFileSync(appended("ship1", "central", "resumed.b64"));
  assert.equal(sha256(written), sha256(`${data}\n`), "written whole, once");
});

test("more chunked messages completing at once than the target puts together: the others are told busy, and all run once, whole", async () => {
  // Messages of at most four chunks go out whole at once (chunks.ts's window): held by a frozen ship1, they
  // all complete in the burst that comes when it goes on, more than its two at a time.
  const observer = await Attacker.connect(fleet.broker.url);
  const answers = observer.capture("_INBOX.>");
  const chunks = observer.capture(chunkSubject("ship1", "*"));
  await Promise.all([answers.ready, chunks.ready]);
  const room = 4 * chunkSizeFor(MiB) - 64 * 1024;
  const sends = [
    { from: "central", size: room },
    { from: "central", size: room },
    { from: "ship3", size: room },
    { from: "ship3", size: room },
    // ship2 sends no more than its maxMessageSize.
    { from: "ship2", size: 2 * MiB - 64 * 1024 },
  ].map((s, i) => ({ ...s, name: `burst-${i}.bin`, data: randomBytes((s.size * 3) / 4).toString("base64") }));
  let thaw: (() => void) | undefined = fleet.node("ship1").freeze();
  try {
    const ids = await Promise.all(
      sends.map(async (s) => {
        const [id] = await fleet.sendOk(s.from, {
          toNode: "ship1",
          method: "fileAppend",
          directory: "in",
          fileName: s.name,
          data: s.data,
          ACKTimeout: 60,
          // No retries: the re-send after a busy is not one.
          retries: 0,
          replyMethod: "none",
        });
        return id as string;
      }),
    );
    await sleepUntil(() => ids.every((id) => sentOf(chunks.frames, id).sent === sentOf(chunks.frames, id).count), {
      what: "every chunk of every message on its way",
    });
    thaw();
    thaw = undefined;

    for (const [i, id] of ids.entries()) {
      const s = sends[i] as (typeof sends)[number];
      assert.equal((await fleet.waitState(s.from, id, undefined, 60_000)).state, "done", s.name);
      const written = readFileSync(appended("ship1", s.from, s.name));
      assert.equal(sha256(written), sha256(`${s.data}\n`), `${s.name} written whole, once`);
    }
    // Told busy with every other chunk of its message stored: at the end, while two others were put together.
    const bodies = answers.frames.map((f) => frameBody(f.data));
    const busy = ids.filter((id) => bodies.some((b) => typeof b.busy === "number" && b.id === id));
    assert.ok(busy.length > 0, "some message's last chunk was told busy");
    for (const id of busy) {
      const stored = new Set(bodies.filter((b) => b.chunk === id).map((b) => b.seq));
      assert.equal(stored.size, sentOf(chunks.frames, id).count - 1, "told busy once its other chunks were stored");
    }
  } finally {
    thaw?.();
    answers.stop();
    chunks.stop();
    await observer.close();
  }
});
