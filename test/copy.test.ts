/**
 * Copying a file between real nodes (copySrc/copyDst, `steward copy`; docs/METHODS.md, "Copy"): the bytes and
 * mode arrive, a SIGKILL of either end mid-copy goes on from the chunks already at the destination, and only
 * a copy central's operator asked for is written (docs/SECURITY.md, "Copy"). Central's default rules stay: only
 * central calls copySrc, and the destination lets chunks in only with central's grant.
 */
import { connect } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { copySubject, inboxPrefix, methodSubject } from "../src/delivery/subjects.js";
import { encode } from "../src/delivery/wire.js";
import { Fleet, frameBody, sleepUntil } from "../src/harness/fleet.js";
import { newId } from "../src/message/id.js";
import { parseMessages } from "../src/message/parse.js";
import { copyTag } from "../src/methods/copyArgs.js";
import { runCli } from "./helpers/cli-helpers.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("copy", ["central", "ship1", "ship2"]);
});
after(() => fleet.close());

const MiB = 1024 * 1024;
/** The body of a signed frame, as bytes. */
const frameBodyBytes = (bytes: Uint8Array): Uint8Array => bytes.subarray(bytes.indexOf(10) + 1);
const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/** A file of random bytes in `node`'s data folder; its path. */
function randomFile(node: string, name: string, size: number, mode = 0o644): string {
  const path = join(fleet.node(node).dataFolder, "src", name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, randomBytes(size), { flag: "w" });
  chmodSync(path, mode);
  return path;
}

/** The copySrc message central's operator hands in. */
function copyMessage(src: string, srcPath: string, dst: string, dstPath: string, chunkSize = "", mode = "") {
  return {
    toNode: src,
    method: "copySrc",
    methodArgs: [srcPath, dst, dstPath, chunkSize, "300", mode],
    methodTimeout: 300,
  };
}

/** Lines of `node`'s chunks file for a copy to `dstPath` (how many chunks it holds). */
function chunksHeld(node: string, dstPath: string): number {
  const dir = dirname(join(fleet.node(node).dataFolder, dstPath));
  if (!existsSync(dir)) return 0;
  const file = readdirSync(dir).find((f) => f.endsWith(".part.chunks"));
  if (!file) return 0;
  return readFileSync(join(dir, file), "utf8").split("\n").length - 2;
}

/** What `node`'s last copy says it sent: chunks sent by that run, and those the destination held at its start. */
function lastCopyLine(node: string): { sent: number; held: number } {
  const log = readFileSync(fleet.node(node).logPath, "utf8");
  const line = [...log.matchAll(/copy: chunks sent.* sent=(\d+) held=(\d+)/g)].at(-1);
  assert.ok(line, `${node}'s log has no copy line: ${log.slice(-2000)}`);
  return { sent: Number(line[1]), held: Number(line[2]) };
}

/**
 * Wait until `node` holds at least `atLeast` chunks of the copy to `dstPath`, looking often: a copy of tens of
 * MiB takes well under a second here, and the test must act while it is still going.
 */
async function untilHeld(node: string, dstPath: string, atLeast: number): Promise<void> {
  await sleepUntil(() => chunksHeld(node, dstPath) >= atLeast, {
    intervalMs: 5,
    what: `${atLeast} chunks of ${dstPath} at ${node}`,
  });
}

/** The names in `node`'s folder `dir` (of its data folder) that belong to the copy to `name`: the file, its part files. */
function filesOf(node: string, dir: string, name: string): string[] {
  const folder = join(fleet.node(node).dataFolder, dir);
  return existsSync(folder) ? readdirSync(folder).filter((f) => f.includes(name)) : [];
}

/** Chunks of a copy started by copyUnderWay: 40 MiB in 64 KiB chunks. */
const UNDER_WAY_CHUNKS = (40 * MiB) / (64 * 1024);

/**
 * A 40 MiB file of `src`'s copied to `dst`:`dstPath` by central's operator, in 64 KiB chunks; resolves once a tenth
 * of them is held there (the copy still going). The source file's path and the copy's id.
 */
async function copyUnderWay(
  src: string,
  name: string,
  dst: string,
  dstPath: string,
): Promise<{ path: string; id: string }> {
  const path = randomFile(src, name, 40 * MiB);
  const [id] = await fleet.sendOk("central", copyMessage(src, path, dst, dstPath, String(64 * 1024)));
  await untilHeld(dst, dstPath, UNDER_WAY_CHUNKS / 10);
  return { path, id: id as string };
}

function query<T>(node: string, sql: string): T {
  const db = new Database(join(fleet.node(node).opts.dir, "var", `${node}.sqlite`), { readonly: true });
  try {
    return db.prepare(sql).pluck().get() as T;
  } finally {
    db.close();
  }
}

describe("copy", () => {
  before(() => {
    for (const n of ["central", "ship1"]) {
      const dir = join(fleet.node(n).dataFolder, "src");
      mkdirSync(dir, { recursive: true });
    }
  });

  test("a 20 MiB file from central to ship1: same sha256, mode kept", async () => {
    const src = randomFile("central", "a.bin", 20 * MiB, 0o640);
    const [id] = await fleet.sendOk("central", copyMessage("central", src, "ship1", "copied/a.bin"));
    const m = await fleet.waitState("central", id as string, "done", 120_000);
    const dst = join(fleet.node("ship1").dataFolder, "copied", "a.bin");
    assert.equal(sha256(dst), sha256(src));
    assert.equal(statSync(dst).mode & 0o777, 0o640);
    assert.match(m.result?.data ?? "", new RegExp(`${20 * MiB} bytes, sha256 ${sha256(src)}`));
    // Nothing left beside it: the part file and its chunks file are gone.
    assert.deepEqual(readdirSync(dirname(dst)), ["a.bin"]);
  });

  test("steward copy ship1 → ship2 from central, with --wait", async () => {
    const src = randomFile("ship1", "b.bin", 3 * MiB + 17);
    const r = await runCli(
      [
        "copy",
        `ship1:${src}`,
        "ship2:copied/b.bin",
        "--mode",
        "0600",
        "--wait",
        "--socket-folder",
        dirname(fleet.node("central").socketPath),
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const dst = join(fleet.node("ship2").dataFolder, "copied", "b.bin");
    assert.equal(sha256(dst), sha256(src));
    assert.equal(statSync(dst).mode & 0o777, 0o600);
    assert.match(r.stdout, new RegExp(`sha256 ${sha256(src)}`));
  });

  test("SIGKILL of the destination mid-copy: it completes, and only chunks in flight are sent again", async () => {
    const { path: src, id } = await copyUnderWay("central", "c.bin", "ship1", "killed/c.bin");
    const count = UNDER_WAY_CHUNKS;
    await fleet.node("ship1").kill();
    const heldAtKill = chunksHeld("ship1", "killed/c.bin");
    // While it waits for ship1, its state on the origin says how far it is.
    const waiting = await fleet.status("central", id);
    assert.equal(waiting.state, "running");
    assert.match(waiting.result?.data ?? "", /copying .* MiB \(\d+%\)/);
    await fleet.node("ship1").start();
    await fleet.waitState("central", id, "done", 120_000);
    assert.equal(sha256(join(fleet.node("ship1").dataFolder, "killed", "c.bin")), sha256(src));
    // The chunks written before the kill were never sent again: at most a window's worth in flight was.
    const sent = lastCopyLine("central");
    assert.ok(heldAtKill > 32, `held ${heldAtKill} at the kill`);
    assert.ok(sent.sent <= count + 16, `${sent.sent} chunks sent for ${count}`);
  });

  test("SIGKILL of the source mid-copy: its run starts again and sends only what the destination lacks", async () => {
    const { path: src, id } = await copyUnderWay("ship1", "d.bin", "ship2", "killed/d.bin");
    const count = UNDER_WAY_CHUNKS;
    await fleet.node("ship1").kill();
    const heldAtKill = chunksHeld("ship2", "killed/d.bin");
    await fleet.node("ship1").start();
    const m = await fleet.waitState("central", id, "done", 120_000);
    assert.equal(sha256(join(fleet.node("ship2").dataFolder, "killed", "d.bin")), sha256(src));
    assert.equal(m.rerun, true);
    // The run after the restart found chunks there and sent only the rest.
    const { sent, held } = lastCopyLine("ship1");
    assert.ok(heldAtKill >= count / 10 && held >= heldAtKill, `held ${heldAtKill} at the kill, ${held} at the restart`);
    assert.equal(sent + held, count);
  });

  test("a forged copyDst (no key, another node's grant, an unauthorised operator) writes nothing", async () => {
    // A legitimate copy's grant: the copySrc frame central sent to central itself.
    const src = randomFile("central", "e.bin", 4096);
    const [id] = await fleet.sendOk("central", copyMessage("central", src, "ship1", "forged/e.bin"));
    await fleet.waitState("central", id as string, "done");
    const rogue = await fleet.peer("rogue");
    const nc = await connect({ servers: fleet.broker.url });
    try {
      const chunk = (from: string, grant: Uint8Array, path: string) => ({
        id: `forged-${path.replace(/\W/g, "")}`,
        fromNode: from,
        toNode: "ship1",
        method: "copyDst",
        methodArgs: [
          "status",
          Buffer.from(grant).toString("base64"),
          "5",
          "4096",
          "0",
          createHash("sha256").update("owned").digest("hex"),
        ],
        data: Buffer.from("owned").toString("base64"),
        dataEncoding: "base64",
        replyMethod: "none",
        replyMethodArgs: [],
        ACKTimeout: 5,
        retries: 0,
        retryWait: 0,
        replyACKTimeout: 0,
        replyRetries: 0,
        methodTimeout: 5,
        replyMethodTimeout: 5,
        attempt: 1,
        deliverBy: Date.now() + 3_600_000,
      });
      // The rogue node as operator of its own copy: central's rules do not let it write on ship1.
      const ownGrantSubject = methodSubject("rogue", "copySrc", "rogue");
      const ownGrant = rogue.seal(ownGrantSubject, {
        ...chunk("rogue", new Uint8Array(), "x"),
        id: "G1",
        toNode: "rogue",
        method: "copySrc",
        methodArgs: ["/etc/passwd", "ship1", "forged/own.bin", "", "", ""],
      });
      const subject = methodSubject("ship1", "copyDst", "rogue");
      const own = frameBody(
        (await nc.request(subject, rogue.seal(subject, chunk("rogue", ownGrant, "own")), { timeout: 5000 })).data,
      );
      assert.match(JSON.stringify(own), /refused.*not allowed: rogue may not call copyDst on ship1/);
      // Central's real grant, replayed by the rogue node: it was central's copy to central, not the rogue's.
      const row = query<Buffer>("central", `SELECT frame FROM inbox_envelopes WHERE id = '${id}'`);
      const replayed = frameBody(
        (await nc.request(subject, rogue.seal(subject, chunk("rogue", row, "replay")), { timeout: 5000 })).data,
      );
      assert.match(JSON.stringify(replayed), /refused.*grant of this copyDst does not verify/);
      // No key at all: dropped unanswered, counted.
      const unsigned = methodSubject("ship1", "copyDst", "central");
      nc.publish(unsigned, encode(chunk("central", row, "unsigned")));
      await sleepUntil(() => readFileSync(fleet.node("ship1").logPath, "utf8").includes("not a signed frame"), {
        what: "ship1 dropped the unsigned chunk",
      });
    } finally {
      await nc.close();
    }
    const forged = join(fleet.node("ship1").dataFolder, "forged");
    assert.deepEqual(readdirSync(forged), ["e.bin"]);
  });

  test("the broker killed and restarted mid-copy: the copy goes on from what the destination holds", async () => {
    const { path: src, id } = await copyUnderWay("central", "g.bin", "ship2", "broker/g.bin");
    const count = UNDER_WAY_CHUNKS;
    await fleet.broker.kill();
    const heldAtKill = chunksHeld("ship2", "broker/g.bin");
    await fleet.broker.restart();
    await fleet.waitState("central", id, "done", 120_000);
    assert.equal(sha256(join(fleet.node("ship2").dataFolder, "broker", "g.bin")), sha256(src));
    // It asked again rather than starting over: what ship2 held at the kill was not sent twice.
    const { sent } = lastCopyLine("central");
    assert.ok(heldAtKill < count, `the copy was not done before the kill (${heldAtKill} of ${count})`);
    assert.ok(sent <= count + 16, `${sent} chunks sent for ${count}`);
  });

  test("chunks on the broker: unsigned, tampered, re-signed by another node or replayed, none gets into the file", async () => {
    const src = randomFile("ship2", "f.bin", 40 * MiB);
    const count = (40 * MiB) / (64 * 1024);
    const nc = await connect({ servers: fleet.broker.url });
    try {
      // Every chunk ship2 sends ship1 is seen by a client on the broker, as an attacker on it would.
      const subject = copySubject("ship1", "ship2");
      const captured: Uint8Array[] = [];
      nc.subscribe(subject, { callback: (_err, msg) => void (captured.length < 4 && captured.push(msg.data)) });
      await nc.flush();
      const [id] = await fleet.sendOk(
        "central",
        copyMessage("ship2", src, "ship1", "attacked/f.bin", String(64 * 1024)),
      );
      await untilHeld("ship1", "attacked/f.bin", count / 10);
      // The source gone, the copy stays open at ship1: its chunks from ship2 are still taken there.
      await fleet.node("ship2").kill();
      const [first] = captured;
      assert.ok(first, "a chunk was seen on the broker");
      const headEnd = first.indexOf(10, first.indexOf(10) + 1);
      const log = () => readFileSync(fleet.node("ship1").logPath, "utf8");
      // Answers go only to the inbox of the node the subject names as the sender (its broker permissions let
      // only that node read it): this client listens there, as that node would.
      let asked = 0;
      const answer = async (payload: Uint8Array, on = subject): Promise<Record<string, unknown>> => {
        const inbox = `${inboxPrefix(on.split(".").at(-1) as string)}.test.${++asked}`;
        const sub = nc.subscribe(inbox, { max: 1, timeout: 10_000 });
        await nc.flush();
        nc.publish(on, payload, { reply: inbox });
        for await (const msg of sub) return frameBody(msg.data) as Record<string, unknown>;
        throw new Error("no answer");
      };

      // Played again as it was: the same bytes at the same place, answered written.
      assert.equal((await answer(first)).written, 0);
      // Its bytes changed: they no longer match the signed sha256.
      const tampered = Uint8Array.from(first);
      tampered[headEnd + 100] = (tampered[headEnd + 100] as number) ^ 0xff;
      nc.publish(subject, tampered);
      await sleepUntil(() => log().includes("its bytes do not match"), { what: "ship1 dropped the tampered chunk" });
      // Its head changed (another index, to put the bytes elsewhere): the signature fails.
      const moved = Buffer.from(
        Buffer.from(first.subarray(0, headEnd)).toString("latin1").replace('"index":0', '"index":9'),
        "latin1",
      );
      nc.publish(subject, Buffer.concat([moved, first.subarray(headEnd)]));
      await sleepUntil(() => /signature does not match ship2/.test(log()), { what: "ship1 dropped the moved chunk" });
      // No frame at all.
      nc.publish(subject, Buffer.from("owned\nowned"));
      await sleepUntil(() => log().includes("not a copy chunk"), { what: "ship1 dropped the unsigned chunk" });
      // An admitted node signing a chunk of this copy itself: the copy was opened for ship2, not for it.
      const rogue = await fleet.peer("rogue");
      const rogueSubject = copySubject("ship1", "rogue");
      const head = JSON.parse(Buffer.from(frameBodyBytes(first.subarray(0, headEnd))).toString()) as {
        copy: string;
      };
      const owned = Buffer.alloc(64 * 1024, 0x41);
      const sum = createHash("sha256").update(owned).digest("hex");
      const forged = Buffer.concat([
        rogue.seal(rogueSubject, { copy: head.copy, index: 1, sha256: sum }),
        Buffer.of(10),
        owned,
      ]);
      assert.match(String((await answer(forged, rogueSubject)).unknown), /is not open on ship1/);
      // The source back: the copy completes, byte for byte the source's.
      await fleet.node("ship2").start();
      await fleet.waitState("central", id as string, "done", 120_000);
      assert.equal(sha256(join(fleet.node("ship1").dataFolder, "attacked", "f.bin")), sha256(src));
      assert.deepEqual(readdirSync(join(fleet.node("ship1").dataFolder, "attacked")), ["f.bin"]);
    } finally {
      await nc.close();
    }
  });

  test("the source file changed while its node was down: the copy fails, no mixed file is put in place, nothing is left", async () => {
    const { path: src, id } = await copyUnderWay("ship1", "h.bin", "ship2", "changed/h.bin");
    await fleet.node("ship1").kill();
    // Same name and size, other bytes: the chunks ship2 holds are the old file's.
    writeFileSync(src, randomBytes(40 * MiB));
    await fleet.node("ship1").start();
    const m = await fleet.waitState("central", id, "failed", 120_000);
    assert.match(m.result?.error ?? m.reason ?? "", /not those of the source file/);
    assert.deepEqual(filesOf("ship2", "changed", "h.bin"), [], "neither the file nor its part files");
  });

  test("a copy cancelled while its destination is down: the destination deletes what it held when it is back", async () => {
    const { id } = await copyUnderWay("central", "i.bin", "ship1", "cancelled/i.bin");
    await fleet.node("ship1").kill();
    assert.ok(
      filesOf("ship1", "cancelled", "i.bin").some((f) => f.endsWith(".part")),
      "ship1 held part of it",
    );
    const out = await runCli(["cancel", id, "--socket-folder", dirname(fleet.node("central").socketPath)]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal((await fleet.waitState("central", id, "cancelled")).state, "cancelled");
    await fleet.node("ship1").start();
    await sleepUntil(() => filesOf("ship1", "cancelled", "i.bin").length === 0, {
      timeoutMs: 60_000,
      what: `ship1 deleting the cancelled copy's files (${filesOf("ship1", "cancelled", "i.bin").join(", ")})`,
    });
  });

  test("a copy cancelled while its destination answers nothing ends at once, and the destination deletes what it held", async () => {
    const { id } = await copyUnderWay("central", "l.bin", "ship1", "frozen/l.bin");
    // Chunks in flight to ship1 get no answer: the source waits for room in its window.
    const thaw = fleet.node("ship1").freeze();
    try {
      const out = await runCli(["cancel", id, "--socket-folder", dirname(fleet.node("central").socketPath)]);
      assert.equal(out.stdout, `${id} cancelled\n`, out.stderr);
      assert.equal((await fleet.waitState("central", id, "cancelled")).state, "cancelled");
    } finally {
      thaw();
    }
    await sleepUntil(() => filesOf("ship1", "frozen", "l.bin").length === 0, {
      timeoutMs: 60_000,
      what: () => `ship1 deleting the cancelled copy's files (${filesOf("ship1", "frozen", "l.bin").join(", ")})`,
    });
    // Central is still there and answering.
    const [ok] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: ["true"] });
    assert.equal((await fleet.waitState("central", ok as string)).state, "done");
  });

  test("a finish that fails there (a folder in the file's place) fails the copy and leaves no part files", async () => {
    const src = randomFile("central", "j.bin", MiB);
    mkdirSync(join(fleet.node("ship1").dataFolder, "taken", "j.bin", "inside"), { recursive: true });
    const [id] = await fleet.sendOk("central", copyMessage("central", src, "ship1", "taken/j.bin"));
    const m = await fleet.waitState("central", id as string, "failed", 60_000);
    assert.match(m.result?.error ?? m.reason ?? "", /finish at ship1: .*taken\/j\.bin/);
    assert.deepEqual(filesOf("ship1", "taken", "j.bin"), ["j.bin"], "only the folder that was there");
  });

  test("links planted under the part files' names in the destination's folder are not written through", async () => {
    // An absolute dstPath (central's operator may) in a folder others could write to, as /tmp is.
    const shared = join(fleet.node("ship1").opts.dir, "shared");
    mkdirSync(shared, { recursive: true });
    const victim = join(fleet.node("ship1").opts.dir, "victim.txt");
    writeFileSync(victim, "keep me\n");
    chmodSync(victim, 0o644);
    const id = `planted-${newId()}`;
    const part = join(shared, `.k.bin.${copyTag(id)}.part`);
    symlinkSync(victim, part);
    symlinkSync(victim, `${part}.chunks`);
    const src = randomFile("central", "k.bin", 2 * MiB, 0o755);
    await fleet.sendOk("central", { id, ...copyMessage("central", src, "ship1", join(shared, "k.bin")) });
    await fleet.waitState("central", id, "done", 60_000);
    assert.equal(readFileSync(victim, "utf8"), "keep me\n");
    assert.equal(statSync(victim).mode & 0o777, 0o644);
    assert.equal(sha256(join(shared, "k.bin")), sha256(src));
    assert.deepEqual(readdirSync(shared), ["k.bin"]);
  });

  test("a setuid source file arrives without its setuid bit unless the operator names the mode", async () => {
    const src = randomFile("central", "suid.bin", 4096, 0o4755);
    const [kept] = await fleet.sendOk("central", copyMessage("central", src, "ship1", "modes/plain.bin"));
    const [named] = await fleet.sendOk("central", copyMessage("central", src, "ship1", "modes/named.bin", "", "4750"));
    await fleet.waitState("central", kept as string, "done");
    await fleet.waitState("central", named as string, "done");
    const modeOf = (name: string) => statSync(join(fleet.node("ship1").dataFolder, "modes", name)).mode & 0o7777;
    assert.equal(modeOf("plain.bin"), 0o755);
    assert.equal(modeOf("named.bin"), 0o4750);
  });

  test("ctrl's copySrc without a methodTimeout runs for its maxTime", () => {
    const [m] = parseMessages(
      JSON.stringify({
        toNode: "ship1",
        method: "REQCopySrc",
        methodArgs: ["/etc/hosts", "ship2", "hosts", "", "120", ""],
      }),
      { ACKTimeout: 5, retries: 1, methodTimeout: 10 },
    );
    assert.ok(m && "messages" in m, JSON.stringify(m));
    assert.equal(m.messages[0]?.methodTimeout, 120);
  });

  test('a dstPath with ".." is refused at input', async () => {
    const answers = await fleet.send("central", copyMessage("central", "/etc/hosts", "ship1", "../outside"));
    assert.equal(answers[0]?.ok, false);
    assert.match(JSON.stringify(answers[0]), /dstPath .*\.\./);
  });
});
