/**
 * Every method, between real nodes (central, ship1, ship2) over a real
 * nats-server (docs/METHODS.md; where results go: docs/DELIVERY.md). Results are checked where the user sees them:
 * the message state on the origin node, the files in the data folders, the
 * node's stdout and central's error log. Central's rules are opened here (any
 * admitted node may call any method): these tests are about methods; the
 * rules have theirs (test/acl.test.ts).
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { listNodes } from "../src/client/client.js";
import { methodSubject, methodSubscription } from "../src/delivery/subjects.js";
import { Fleet, frameBody, type Peer, sleepUntil } from "../src/harness/fleet.js";
import type { MethodName } from "../src/message/methods.js";
import { isAlive, marker, readIfExists, waitFile } from "./helpers/methods-helpers.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("methods", ["central", "ship1", "ship2"]);
  await fleet.allowAll();
});
after(() => fleet.close());

const data = (node: string) => fleet.node(node).dataFolder;

/** The fields of an envelope a peer puts straight onto the broker, beside its ids, nodes and method. */
const WIRE_FIELDS = {
  methodArgs: [],
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
};

/** Ask `toNode`'s `method` as `peer` straight on the broker (signed with its admitted key); the node's answer, parsed. */
async function ask(
  nc: NatsConnection,
  peer: Peer,
  toNode: string,
  method: MethodName,
  value: unknown,
): Promise<Record<string, unknown>> {
  const subject = methodSubject(toNode, method, peer.name);
  return frameBody((await nc.request(subject, peer.seal(subject, value), { timeout: 5_000 })).data) as Record<
    string,
    unknown
  >;
}

/** Send one message and wait for its final state on the sender. */
async function run(from: string, msg: Record<string, unknown>, timeoutMs?: number) {
  const [id] = await fleet.sendOk(from, msg);
  return fleet.waitState(from, id as string, undefined, timeoutMs);
}

describe("cliCommand", () => {
  test("stdout comes back as the result data, exit code and stderr are kept", async () => {
    const m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["bash", "-c", "echo out; echo err >&2; exit 3"],
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.exitCode, 3);
    assert.equal(m.result?.data, "out\n");
    assert.equal(m.result?.stderr, "err\n");
    assert.equal(m.result?.exitCode, 3);
  });

  test("no implicit shell: the arguments reach the command as given", async () => {
    const m = await run("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["printf", "%s|", "a b", "$HOME", "*"],
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "a b|$HOME|*|");
  });

  test("a command that does not exist fails with a reason naming it", async () => {
    const cmd = marker("no-such-command");
    const m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: [cmd, "x"],
      replyMethod: "none",
    });
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.ok(m.reason, "a failed message has a reason");
    assert.match(m.reason, new RegExp(cmd));
    // The receiver reports the method's failure to central's error log.
    const log = await waitFile(join(data("central"), "errorLog", "ship1", "errorLog.log"), (t) => t.includes(cmd));
    assert.match(
      log.split("\n").find((l) => l.includes(cmd)) ?? "",
      /toNode: ship1, fromNode: central, method: cliCommand/,
    );
  });

  test("methodTimeout fails the message and kills the whole process tree", async () => {
    const pidFile = join(fleet.dir, `${marker("tree")}.pids`);
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: [
        "bash",
        "-c",
        `echo $$ >> ${pidFile}; sleep 300 & echo $! >> ${pidFile}; sleep 300 & echo $! >> ${pidFile}; wait`,
      ],
      methodTimeout: 1,
      replyMethod: "none",
    });
    const pids = (await waitFile(pidFile, (t) => t.trim().split("\n").length === 3)).trim().split("\n").map(Number);
    assert.equal(pids.length, 3);
    assert.ok(
      pids.every((p) => p > 0 && isAlive(p)),
      "the shell and both sleeps run before the timeout",
    );

    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.match(m.reason ?? "", /timed out|methodTimeout/);
    // SIGKILL is immediate, but the kernel tears the processes down asynchronously: poll, don't sleep.
    await sleepUntil(() => pids.every((p) => !isAlive(p)), {
      timeoutMs: 5_000,
      what: () => `processes ${pids.filter(isAlive).join(", ")} of the timed-out command to be gone`,
    });
  });

  test("a command that finishes within methodTimeout is not disturbed by it", async () => {
    const m = await run("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["bash", "-c", "echo quick"],
      methodTimeout: 5,
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "quick\n");
  });

  test("ship1 to ship2 (not only from central): result back on ship1, in ship1's data folder", async () => {
    const word = marker("from-ship1");
    const m = await run("ship1", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["bash", "-c", `echo ${word} $STEWARD_NODE_NAME`],
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, `${word} ship2\n`);
    // Default replyMethod fileAppend, default fileName <method>.result, under the producing node.
    const text = await waitFile(join(data("ship1"), "ship2", "cliCommand.result"), (t) => t.includes(word));
    assert.ok(text.includes(`${word} ship2\n`));
  });

  test("a node sends to itself", async () => {
    for (const node of ["ship2", "central"]) {
      const word = marker(`self-${node}`);
      const m = await run(node, {
        toNode: node,
        method: "cliCommand",
        methodArgs: ["bash", "-c", `echo ${word} $STEWARD_NODE_NAME $STEWARD_FROM_NODE`],
      });
      assert.equal(m.state, "done", `${node}: ${JSON.stringify(m)}`);
      assert.equal(m.result?.data, `${word} ${node} ${node}\n`);
      await waitFile(join(data(node), node, "cliCommand.result"), (t) => t.includes(word));
    }
  });
});

describe("console", () => {
  test("a console request prints its data on the receiving node's stdout", async () => {
    const word = marker("console-request");
    const m = await run("central", { toNode: "ship1", method: "console", data: `${word} line`, replyMethod: "none" });
    assert.equal(m.state, "done", JSON.stringify(m));
    await sleepUntil(() => fleet.node("ship1").stdout.includes(`${word} line\n`), {
      what: `"${word}" on ship1's stdout`,
    });
    assert.ok(!fleet.node("central").stdout.includes(word), "not printed on the sender");
    assert.ok(!fleet.node("ship2").stdout.includes(word), "not printed on a bystander");
  });

  test("base64 data is decoded before it is printed", async () => {
    const word = marker("console-b64");
    const m = await run("central", {
      toNode: "ship2",
      method: "console",
      data: Buffer.from(`${word}\n`).toString("base64"),
      dataEncoding: "base64",
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    await sleepUntil(() => fleet.node("ship2").stdout.includes(`${word}\n`), {
      what: `"${word}" decoded on ship2's stdout`,
    });
  });

  test("console as replyMethod prints the result on the sender", async () => {
    const word = marker("console-reply");
    const m = await run("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["echo", word],
      replyMethod: "console",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    await sleepUntil(() => fleet.node("central").stdout.includes(`${word}\n`), {
      what: `"${word}" on central's stdout`,
    });
    assert.ok(!fleet.node("ship2").stdout.includes(word), "the producing node does not print the reply");
  });
});

describe("file and fileAppend as request methods", () => {
  test("file writes (replaces) <receiverData>/<directory>/<fromNode>/<fileName>", async () => {
    const dir = marker("req-file");
    const path = join(data("ship1"), dir, "central", "f.txt");
    let m = await run("central", {
      toNode: "ship1",
      method: "file",
      directory: dir,
      fileName: "f.txt",
      data: "first\n",
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(path), "first\n");
    m = await run("central", {
      toNode: "ship1",
      method: "file",
      directory: dir,
      fileName: "f.txt",
      data: "second\n",
      replyMethod: "none",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(path), "second\n");
    assert.ok(!existsSync(join(data("central"), dir)), "nothing written on the sender with replyMethod none");
  });

  test("fileAppend appends to <receiverData>/<directory>/<fromNode>/<fileName>, nested directories too", async () => {
    const dir = `${marker("req-append")}/nested/deeper`;
    const path = join(data("ship2"), dir, "ship1", "a.log");
    for (const line of ["one", "two", "three"]) {
      const m = await run("ship1", {
        toNode: "ship2",
        method: "fileAppend",
        directory: dir,
        fileName: "a.log",
        data: line,
        replyMethod: "none",
      });
      assert.equal(m.state, "done", JSON.stringify(m));
    }
    assert.equal(readIfExists(path), "one\ntwo\nthree\n");
  });

  test("without directory and fileName: <receiverData>/<fromNode>/<method>.result", async () => {
    const word = marker("req-default");
    const m = await run("ship2", { toNode: "ship1", method: "fileAppend", data: word, replyMethod: "none" });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.ok((readIfExists(join(data("ship1"), "ship2", "fileAppend.result")) ?? "").includes(`${word}\n`));
  });

  for (const method of ["file", "fileAppend", "REQToFile", "REQToFileAppend"]) {
    test(`a ${method} request with ".." in directory is refused at input`, async () => {
      for (const directory of ["../escape", "a/../../escape", "..", "a/.."]) {
        const answers = await fleet.send("central", { toNode: "ship1", method, directory, fileName: "x", data: "x" });
        assert.equal(answers.length, 1);
        const a = answers[0];
        assert.ok(a && !a.ok, `${directory}: refused, got ${JSON.stringify(a)}`);
        assert.match(a.error, /message 0/);
        assert.match(a.error, /field "directory"/);
        assert.match(a.error, /\.\./);
      }
      assert.ok(!existsSync(join(data("ship1"), "..", "escape")), "nothing written outside the data folder");
    });

    test(`a ${method} request with an absolute directory is refused at input`, async () => {
      const target = join(fleet.dir, marker("abs-req"));
      const answers = await fleet.send("central", {
        toNode: "ship1",
        method,
        directory: target,
        fileName: "x",
        data: "x",
      });
      const a = answers[0];
      assert.ok(a && !a.ok, `refused, got ${JSON.stringify(a)}`);
      assert.match(a.error, /message 0/);
      assert.match(a.error, /field "directory"/);
      assert.ok(!existsSync(target));
    });
  }

  test("a refused message does not stop the valid ones of the same batch", async () => {
    const dir = marker("batch");
    const answers = await fleet.send("central", [
      { toNode: "ship1", method: "file", directory: "../x", data: "bad" },
      { toNode: "ship1", method: "file", directory: dir, fileName: "ok.txt", data: "good\n", replyMethod: "none" },
    ]);
    assert.equal(answers.length, 2);
    assert.ok(answers[0] && !answers[0].ok && /message 0/.test(answers[0].error), JSON.stringify(answers[0]));
    const good = answers[1];
    assert.ok(good?.ok, JSON.stringify(good));
    const m = await fleet.waitState("central", good.id);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(join(data("ship1"), dir, "central", "ok.txt")), "good\n");
  });
});

describe("file and fileAppend as replyMethod (on the sender)", () => {
  test("file replaces <senderData>/<directory>/<producing node>/<fileName>", async () => {
    const dir = marker("reply-file");
    const path = join(data("central"), dir, "ship1", "r.txt");
    let m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "first"],
      replyMethod: "file",
      directory: dir,
      fileName: "r.txt",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(path), "first\n");
    m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "second"],
      replyMethod: "file",
      directory: dir,
      fileName: "r.txt",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(path), "second\n");
    assert.ok(!existsSync(join(data("ship1"), dir)), "the producing node writes nothing");
  });

  test("fileAppend appends to <senderData>/<directory>/<producing node>/<fileName>", async () => {
    const dir = marker("reply-append");
    const path = join(data("central"), dir, "ship2", "r.log");
    for (const word of ["first", "second"]) {
      const m = await run("central", {
        toNode: "ship2",
        method: "cliCommand",
        methodArgs: ["echo", word],
        replyMethod: "fileAppend",
        directory: dir,
        fileName: "r.log",
      });
      assert.equal(m.state, "done", JSON.stringify(m));
    }
    assert.equal(readIfExists(path), "first\nsecond\n");
  });

  test("the default replyMethod is fileAppend and the default fileName <method>.result", async () => {
    const dir = marker("reply-default");
    for (const word of ["a", "b"]) {
      const m = await run("ship2", {
        toNode: "ship1",
        method: "REQCliCommand",
        methodArgs: ["echo", word],
        directory: dir,
      });
      assert.equal(m.state, "done", JSON.stringify(m));
    }
    assert.equal(readIfExists(join(data("ship2"), dir, "ship1", "cliCommand.result")), "a\nb\n");
  });

  test("results from two nodes go to one folder per producing node", async () => {
    const dir = marker("reply-two");
    const ids = await fleet.sendOk("central", {
      toNodes: ["ship1", "ship2"],
      method: "cliCommand",
      methodArgs: ["bash", "-c", "echo $STEWARD_NODE_NAME"],
      directory: dir,
      fileName: "who",
    });
    assert.equal(ids.length, 2);
    assert.notEqual(ids[0], ids[1], "toNodes fans out into messages with their own ids");
    for (const id of ids) assert.equal((await fleet.waitState("central", id)).state, "done");
    assert.equal(readIfExists(join(data("central"), dir, "ship1", "who")), "ship1\n");
    assert.equal(readIfExists(join(data("central"), dir, "ship2", "who")), "ship2\n");
  });

  test("an absolute directory is used as given, plus /<producing node>/<fileName>", async () => {
    const abs = join(fleet.dir, marker("abs-reply"));
    const m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "absolute"],
      replyMethod: "file",
      directory: abs,
      fileName: "abs.txt",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(join(abs, "ship1", "abs.txt")), "absolute\n");
  });

  test("a failed method's reason is written with the result", async () => {
    const dir = marker("reply-failed");
    const cmd = marker("missing-cmd");
    const m = await run("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: [cmd],
      directory: dir,
      fileName: "f.log",
    });
    assert.equal(m.state, "failed", JSON.stringify(m));
    const text = readIfExists(join(data("central"), dir, "ship2", "f.log"));
    assert.ok(text?.includes(cmd), `the result file says what failed: ${JSON.stringify(text)}`);
  });

  test("a reply method that cannot write fails the message with a reason", async () => {
    // A regular file where a folder should be: mkdir fails with ENOTDIR.
    const blocker = join(fleet.dir, marker("not-a-folder"));
    writeFileSync(blocker, "");
    const m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "x"],
      replyMethod: "file",
      directory: `${blocker}/sub`,
    });
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.ok(m.reason?.includes(blocker), `the reason names the path: ${m.reason}`);
  });

  test("a reply method whose absolute directory is under /proc fails instead of hanging the node", async () => {
    // procfs answers ENOENT to mkdir, which sends Node's recursive mkdir into an endless loop.
    // Its own sender node, so that a wedged node cannot take the rest of the suite with it.
    const wedge = await fleet.add("procsender");
    try {
      const [id] = await fleet.sendOk("procsender", {
        toNode: "ship1",
        method: "cliCommand",
        methodArgs: ["echo", "x"],
        replyMethod: "file",
        directory: "/proc/steward-cannot-write",
      });
      const m = await fleet.waitState("procsender", id as string, undefined, 10_000);
      assert.equal(m.state, "failed", JSON.stringify(m));
      assert.match(m.reason ?? "", /steward-cannot-write/);
      // And the node still stops when asked.
      await wedge.stop();
    } finally {
      if (wedge.running) await wedge.kill();
    }
  });

  test("a reply's path comes from the sender's stored request, never from the wire", async () => {
    const ghost = marker("ghost-replier");
    const dir = marker("stored-path");
    const evil = join(fleet.dir, marker("evil"));
    // A request that stays unanswered (nobody is called ghost), so a forged reply can answer it.
    const [id] = await fleet.sendOk("central", {
      toNode: ghost,
      method: "cliCommand",
      methodArgs: ["true"],
      ACKTimeout: 20,
      retries: 0,
      replyMethod: "file",
      directory: dir,
      fileName: "real.txt",
    });
    const nc = await connect({ servers: fleet.broker.url });
    // Played from the broker with keys central admitted: the node the request went to, and another one.
    const ghostPeer = await fleet.peer(ghost);
    const bystander = await fleet.peer(marker("bystander"));
    try {
      const forged = (fromNode: string) => ({
        id: marker("forged"),
        ...WIRE_FIELDS,
        toNode: "central",
        fromNode,
        method: "file",
        requestId: id,
        directory: evil,
        fileName: "evil.txt",
        data: "forged\n",
        result: { exitCode: 0 },
      });
      // From a node the request was not sent to: refused, the request is untouched.
      const refusal = await ask(nc, bystander, "central", "file", forged(bystander.name));
      assert.ok(typeof refusal.refused === "string", `refused: ${JSON.stringify(refusal)}`);
      assert.notEqual((await fleet.status("central", id as string)).state, "done");
      // From the target, but as another method than the reply method asked for: refused, nothing runs.
      const pwned = join(fleet.dir, marker("pwned"));
      const asCommand = { ...forged(ghost), method: "cliCommand", methodArgs: ["touch", pwned] };
      const refusedCommand = await ask(nc, ghostPeer, "central", "cliCommand", asCommand);
      assert.ok(typeof refusedCommand.refused === "string", `refused: ${JSON.stringify(refusedCommand)}`);
      // A fromNode that is a path is refused before anything is stored or written.
      const traversal = { ...forged(ghost), fromNode: "../../escape" };
      const refusedPath = await ask(nc, ghostPeer, "central", "file", traversal);
      assert.match(String(refusedPath.refused), /fromNode/);
      // From the target, naming a directory of its own: checked as input is, and refused.
      const named = await ask(nc, ghostPeer, "central", "file", forged(ghost));
      assert.match(String(named.refused), /directory/);
      // From the target, without one: taken, and written where the stored request says.
      const { directory: _ignored, ...right } = forged(ghost);
      const ack = await ask(nc, ghostPeer, "central", "file", right);
      assert.deepEqual(ack, { ack: right.id });
    } finally {
      await nc.close();
    }
    // The request itself may already have failed ("no subscriber" on ghost comes back at once);
    // the reply, the receiver's word, settles it: wait for that, not for the first final state.
    const m = await fleet.waitState("central", id as string, "done");
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(readIfExists(join(data("central"), dir, ghost, "real.txt")), "forged\n");
    assert.ok(!existsSync(evil), "the directory on the wire is ignored");
    assert.ok(
      readdirSync(fleet.dir).every((f) => !f.startsWith("pwned")),
      "a forged reply never runs a command",
    );
  });

  test("replyMethod none writes no file, the state is still done with the result data", async () => {
    const dir = marker("reply-none");
    const m = await run("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "kept"],
      replyMethod: "none",
      directory: dir,
      fileName: "n.txt",
    });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "kept\n");
    assert.equal(m.exitCode, 0);
    assert.ok(!existsSync(join(data("central"), dir)), "no folder on the sender");
    assert.ok(!existsSync(join(data("ship1"), dir)), "no folder on the receiver");
  });
});

describe("ping, hello, errorLog", () => {
  test("ping: default reply method pong, done, the result names the target", async () => {
    for (const [from, to] of [
      ["central", "ship2"],
      ["ship1", "ship2"],
      ["ship1", "ship1"],
    ] as const) {
      const [id] = await fleet.sendOk(from, { toNode: to, method: "ping" });
      const m = await fleet.waitState(from, id as string);
      assert.equal(m.state, "done", `${from}→${to}: ${JSON.stringify(m)}`);
      assert.match(m.result?.data ?? "", new RegExp(`\\b${to}\\b`));
    }
    // The seed alias answers the same way.
    const m = await run("ship2", { toNode: "central", method: "REQPing" });
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.match(m.result?.data ?? "", /\bcentral\b/);
  });

  test("hello: central lists every node with lastSeen, and keeps hearing from them", async () => {
    const seen = async () => {
      const { nodes } = await listNodes(fleet.node("central").socketPath);
      return new Map(nodes.map((n) => [n.name, n.lastSeen]));
    };
    let first = new Map<string, number | null>();
    await sleepUntil(
      async () => {
        first = await seen();
        return ["ship1", "ship2"].every((n) => typeof first.get(n) === "number");
      },
      { what: () => `central to list ship1 and ship2 with lastSeen (got ${JSON.stringify([...first])})` },
    );
    const { node, central } = await listNodes(fleet.node("central").socketPath);
    assert.equal(node, "central");
    assert.equal(central, "central");
    // Hellos keep coming (every startPubREQHello = 1 s): lastSeen moves on.
    let now = first;
    await sleepUntil(
      async () => {
        now = await seen();
        return ["ship1", "ship2"].every((n) => (now.get(n) as number) > (first.get(n) as number));
      },
      { what: () => `lastSeen to move on (first ${JSON.stringify([...first])}, now ${JSON.stringify([...now])})` },
    );
  });

  test("errorLog: a message to a node that does not exist fails, and central's error log says so", async () => {
    for (const from of ["central", "ship1"]) {
      const ghost = marker("ghost");
      const m = await run(from, {
        toNode: ghost,
        method: "cliCommand",
        methodArgs: ["true"],
        ACKTimeout: 1,
        retries: 1,
      });
      assert.equal(m.state, "failed", JSON.stringify(m));
      assert.match(m.reason ?? "", /max retries reached/);
      const log = await waitFile(join(data("central"), "errorLog", from, "errorLog.log"), (t) => t.includes(ghost));
      const line = log.split("\n").find((l) => l.includes(`toNode: ${ghost}`));
      assert.ok(line, `a line for ${ghost} in ${from}'s error log: ${log}`);
      assert.match(line, new RegExp(`fromNode: ${from}`));
      assert.match(line, /method: cliCommand/);
      assert.match(line, /max retries reached/);
    }
  });

  test("the error log has one line per error", async () => {
    const ghost = marker("ghost-once");
    const m = await run("ship2", { toNode: ghost, method: "ping", ACKTimeout: 1, retries: 0 });
    assert.equal(m.state, "failed", JSON.stringify(m));
    const path = join(data("central"), "errorLog", "ship2", "errorLog.log");
    await waitFile(path, (t) => t.includes(ghost));
    // Give a duplicate the chance to show up by waiting for a later error to land behind it.
    const later = marker("ghost-later");
    await run("ship2", { toNode: later, method: "ping", ACKTimeout: 1, retries: 0 });
    const log = await waitFile(path, (t) => t.includes(later));
    assert.equal(log.split("\n").filter((l) => l.includes(ghost)).length, 1, log);
  });
});

describe("a request from the wire, which no input checked", () => {
  /** Send a request to ship1 as a peer would (straight onto the broker); its ACK or refusal. */
  async function answerToPeer(method: MethodName, extra: Record<string, unknown>): Promise<unknown> {
    const nc = await connect({ servers: fleet.broker.url });
    const peer = await fleet.peer(marker("peer"));
    try {
      const request = {
        id: marker("from-peer"),
        toNode: "ship1",
        fromNode: peer.name,
        method,
        ...WIRE_FIELDS,
        ...extra,
      };
      return await ask(nc, peer, "ship1", method, request);
    } finally {
      await nc.close();
    }
  }

  /** Send a request to ship1 as a peer would (straight onto the broker) and return the reply it gets back. */
  async function fromPeer(method: MethodName, extra: Record<string, unknown>) {
    const peer = await fleet.peer(marker("peer"));
    const nc = await connect({ servers: fleet.broker.url });
    try {
      const replies = nc.subscribe(methodSubscription(peer.name, "none"), { max: 1 });
      const request = {
        id: marker("from-peer"),
        toNode: "ship1",
        fromNode: peer.name,
        method,
        ...WIRE_FIELDS,
        ...extra,
      };
      const ack = await ask(nc, peer, "ship1", method, request);
      assert.deepEqual(ack, { ack: request.id });
      for await (const msg of replies) {
        const reply = frameBody(msg.data) as { id: string; result?: { error?: string } };
        msg.respond(peer.seal(msg.reply as string, { ack: reply.id }));
        return reply;
      }
      throw new Error("no reply");
    } finally {
      await nc.close();
    }
  }

  test("its arguments get the same check as at input: refused on arrival, never run", async () => {
    const refused = async (method: MethodName, extra: Record<string, unknown>) =>
      String(((await answerToPeer(method, extra)) as { refused?: string }).refused);
    assert.match(await refused("cliCommand", { methodArgs: [] }), /bad message: .*needs the command/);
    assert.match(await refused("httpGet", { methodArgs: ["not a url"] }), /bad message: .*http:\/\/ or https:\/\//);
    assert.match(
      await refused("file", { directory: "/tmp", fileName: "x", data: "y" }),
      /bad message: .*writes inside the receiver's data folder/,
    );
    // A well-formed one from the same kind of peer runs, and its reply comes back to it.
    const ran = await fromPeer("cliCommand", { methodArgs: ["true"] });
    assert.equal(ran.result?.error, undefined, JSON.stringify(ran));
  });

  test("fields of the wrong type are refused on arrival, unACKed and unrun, saying which", async () => {
    for (const [extra, field] of [
      [{ methodArgs: ["echo", 5] }, "methodArgs"],
      [{ methodArgs: ["echo"], directory: 5 }, "directory"],
      [{ methodArgs: ["echo"], fileName: ["x"] }, "fileName"],
    ] as const) {
      const answer = (await answerToPeer("cliCommand", extra)) as { refused?: string };
      assert.match(answer.refused ?? "", new RegExp(`bad message: field ${field}`), JSON.stringify(answer));
    }
  });
});
