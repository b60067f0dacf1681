/**
 * The inputs of a real node (DESIGN §6): the unix socket <node dir>/tmp/steward.sock
 * and the read folder <node dir>/readfolder. Each answers per message — the
 * accepted id or the error —, the valid messages of a batch run even when
 * others are refused, and garbage never takes a node down.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { health, submit } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { noise, rawExchange, uniqueId } from "./helpers/cli-helpers.js";

let fleet: Fleet;
let sock: string;

before(async () => {
  fleet = await Fleet.start("inputs", ["central", "ship1"]);
  sock = fleet.node("central").socketPath;
});
after(() => fleet.close());

/** A cliCommand to ship1 whose output names its id, so each result is told apart. */
function valid(id: string, toNode = "ship1"): Record<string, unknown> {
  return { id, toNode, method: "cliCommand", methodArgs: ["echo", id], ACKTimeout: 5, retries: 3 };
}

async function assertDone(id: string, expectData?: string, timeoutMs?: number): Promise<void> {
  const m = await fleet.waitState("central", id, undefined, timeoutMs);
  assert.equal(m.state, "done", `message ${id}: ${JSON.stringify(m)}`);
  assert.equal(m.exitCode, 0);
  if (expectData !== undefined) assert.equal(m.result?.data, expectData);
}

/** Send a fresh valid message and see it through to done: the node is up and working. */
async function stillWorks(tag: string, timeoutMs?: number): Promise<void> {
  const id = uniqueId(tag);
  const answers = await submit(sock, JSON.stringify(valid(id)));
  assert.deepEqual(answers, [{ ok: true, id, toNode: "ship1", method: "cliCommand" }]);
  await assertDone(id, `${id}\n`, timeoutMs);
}

function centralAlive(): void {
  assert.ok(fleet.node("central").running, "central is still running");
}

describe("unix socket", () => {
  test("answers one line per message: accepted <id> <toNode> <method>", async () => {
    const a = uniqueId("one");
    const b = uniqueId("fan");
    const { lines, closedByNode } = await rawExchange(
      sock,
      JSON.stringify([valid(a), { id: b, toNodes: ["ship1", "central"], method: "ping", ACKTimeout: 5 }]),
    );
    assert.ok(closedByNode);
    assert.deepEqual(lines, [
      `accepted ${a} ship1 cliCommand`,
      `accepted ${b}@ship1 ship1 ping`,
      `accepted ${b}@central central ping`,
    ]);
    await assertDone(a, `${a}\n`);
    for (const id of [`${b}@ship1`, `${b}@central`]) {
      const m = await fleet.waitState("central", id);
      assert.equal(m.state, "done", JSON.stringify(m));
    }
  });

  test("sending the same id again answers (already accepted)", async () => {
    const id = uniqueId("dup");
    const doc = JSON.stringify(valid(id));
    const first = await rawExchange(sock, doc);
    assert.deepEqual(first.lines, [`accepted ${id} ship1 cliCommand`]);
    await assertDone(id);
    const second = await rawExchange(sock, doc);
    assert.deepEqual(second.lines, [`accepted ${id} ship1 cliCommand (already accepted)`]);
  });

  test("a batch with garbage elements between valid ones: the valid ones are accepted and reach done", async () => {
    const a = uniqueId("batch-a");
    const b = uniqueId("batch-b");
    const c = uniqueId("batch-c");
    const doc = JSON.stringify([
      valid(a),
      42,
      "not a message",
      { ...valid(uniqueId("x")), colour: "blue" },
      valid(b),
      { toNode: "bad.node", method: "ping" },
      { toNode: "ship1", method: "launchRockets" },
      null,
      valid(c),
    ]);
    const { lines } = await rawExchange(sock, doc);
    assert.equal(lines.length, 9, `one line per message:\n${lines.join("\n")}`);
    assert.equal(lines[0], `accepted ${a} ship1 cliCommand`);
    assert.equal(lines[4], `accepted ${b} ship1 cliCommand`);
    assert.equal(lines[8], `accepted ${c} ship1 cliCommand`);
    for (const i of [1, 2, 3, 5, 6, 7]) {
      assert.match(lines[i] as string, new RegExp(`^error message ${i}\\b`), `line ${i}: ${lines[i]}`);
    }
    assert.match(lines[3] as string, /"colour"/);
    assert.match(lines[5] as string, /"toNode"/);
    assert.match(lines[6] as string, /"method"/);
    await Promise.all([assertDone(a, `${a}\n`), assertDone(b, `${b}\n`), assertDone(c, `${c}\n`)]);
  });

  test("one line per message even when the refused input itself holds a line break", async () => {
    // The error text quotes the offending name or field; a raw newline in it must not split the answer.
    const ok = uniqueId("nl");
    const { lines } = await rawExchange(
      sock,
      JSON.stringify([
        { toNode: "bad\nnode", method: "ping" },
        { ...valid(uniqueId("y")), "evil\nfield": 1 },
        { toNode: "ship1", method: "no\nsuch" },
        valid(ok),
      ]),
    );
    assert.equal(
      lines.length,
      4,
      `expected 4 answer lines (one per message), got ${lines.length}:\n${lines.join("\n")}`,
    );
    assert.match(lines[0] as string, /^error message 0\b/);
    assert.match(lines[1] as string, /^error message 1\b/);
    assert.match(lines[2] as string, /^error message 2\b/);
    assert.equal(lines[3], `accepted ${ok} ship1 cliCommand`);
    await assertDone(ok);
  });

  const garbage: [string, string | Buffer][] = [
    ["random bytes", noise(64 * 1024)],
    ["{{{", "{{{"],
    ["an unterminated JSON", '{"toNode": "ship1", "method": "cliCommand", "methodArgs": ["echo", "never"'],
    ["a 2 MB string", "x".repeat(2 * 1024 * 1024)],
    ["a 2 MB JSON string value", JSON.stringify("y".repeat(2 * 1024 * 1024))],
    ["YAML that is not a message", "just: [some, yaml]\nof: {no: use}\n"],
  ];
  for (const [name, payload] of garbage) {
    test(`garbage (${name}) gets an error answer; the node stays up and keeps accepting`, async () => {
      // A valid message in parallel with the garbage, and one right after it.
      const parallelId = uniqueId("parallel");
      const [answer, parallel] = await Promise.all([
        rawExchange(sock, payload, { timeoutMs: 30_000 }),
        submit(sock, JSON.stringify(valid(parallelId))),
      ]);
      assert.ok(answer.lines.length >= 1, "an answer came back");
      for (const line of answer.lines) assert.match(line, /^error /, `garbage answered with: ${line.slice(0, 200)}`);
      assert.deepEqual(parallel, [{ ok: true, id: parallelId, toNode: "ship1", method: "cliCommand" }]);
      centralAlive();
      await assertDone(parallelId);
      await stillWorks("after-garbage");
    });
  }

  test("2 MB of nested brackets: error answer, and the node stays responsive meanwhile", async () => {
    // A liveness bound, not a benchmark: the whole exchange plus a message run in
    // parallel must finish within the usual 20 s a message gets in these tests.
    const deadline = 20_000;
    const parallelId = uniqueId("brackets");
    const work = Promise.all([
      rawExchange(sock, "[".repeat(2 * 1024 * 1024), { timeoutMs: 120_000 }),
      (async () => {
        await sleepUntil(async () => (await health(sock)).broker === "up");
        assert.deepEqual(await submit(sock, JSON.stringify(valid(parallelId))), [
          { ok: true, id: parallelId, toNode: "ship1", method: "cliCommand" },
        ]);
        await assertDone(parallelId, undefined, deadline);
      })(),
    ]);
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `2 MB of "[" kept the node busy for more than ${deadline / 1000} s: a parallel message did not get through`,
            ),
          ),
        deadline,
      );
    });
    try {
      const [answer] = await Promise.race([work, bound]);
      assert.ok(answer.lines.length >= 1);
      for (const line of answer.lines) assert.match(line, /^error /);
    } finally {
      clearTimeout(timer);
      await work.catch(() => undefined); // let the exchange finish before the next test
    }
    centralAlive();
  });

  test("a silent client that keeps its connection open does not block anyone", async () => {
    const silent = createConnection(sock);
    await new Promise<void>((resolve, reject) => {
      silent.once("connect", resolve);
      silent.once("error", reject);
    });
    try {
      await stillWorks("beside-silent");
    } finally {
      silent.destroy();
    }
  });

  test("a client that sends JSON and keeps its side open (nc without -N) gets its answers and is closed by the node", async () => {
    const a = uniqueId("open-a");
    const b = uniqueId("open-b");
    const answer = await rawExchange(sock, JSON.stringify([valid(a), valid(b)], null, 2), {
      keepOpen: true,
      timeoutMs: 15_000,
    });
    assert.ok(answer.closedByNode, "the node closed the connection");
    assert.deepEqual(answer.lines, [`accepted ${a} ship1 cliCommand`, `accepted ${b} ship1 cliCommand`]);
    await Promise.all([assertDone(a), assertDone(b)]);
  });

  for (const [name, payload] of [
    ["{{{", "{{{"],
    ["an unterminated JSON string", '{"toNode": "ship1", "method": "'],
  ] as const) {
    test(`garbage (${name}) from a client that keeps its side open still gets an error answer and is closed`, async () => {
      const answer = await rawExchange(sock, payload, { keepOpen: true, timeoutMs: 15_000 });
      assert.ok(answer.closedByNode, "the node closed the connection");
      assert.ok(answer.lines.length >= 1);
      for (const line of answer.lines) assert.match(line, /^error /);
      await stillWorks("after-open-garbage");
    });
  }

  test("JSON split over several writes with the side kept open is still one document", async () => {
    const id = uniqueId("split");
    const text = JSON.stringify(valid(id));
    const answer = await new Promise<string>((resolve, reject) => {
      const s = createConnection({ path: sock, allowHalfOpen: true });
      let out = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => {
        out += d;
      });
      s.on("end", () => {
        s.end();
        resolve(out);
      });
      s.on("error", reject);
      s.on("connect", () => {
        s.write(text.slice(0, 10));
        setImmediate(() => {
          s.write(text.slice(10, 30));
          setImmediate(() => s.write(text.slice(30)));
        });
      });
    });
    assert.equal(answer.trim(), `accepted ${id} ship1 cliCommand`);
    await assertDone(id);
  });

  test("YAML through the socket", async () => {
    const a = uniqueId("yaml-a");
    const b = uniqueId("yaml-b");
    const yaml = [
      `- id: ${a}`,
      "  toNode: ship1",
      "  method: REQCliCommand",
      "  methodArgs: [echo, from-yaml]",
      `- id: ${b}`,
      "  toNode: ship1",
      "  method: cliCommand",
      "  methodArgs:",
      "    - bash",
      "    - -c",
      "    - echo second",
      "  ACKTimeout: 5",
      "",
    ].join("\n");
    const answers = await submit(sock, yaml);
    assert.deepEqual(answers, [
      { ok: true, id: a, toNode: "ship1", method: "cliCommand" },
      { ok: true, id: b, toNode: "ship1", method: "cliCommand" },
    ]);
    await assertDone(a, "from-yaml\n");
    await assertDone(b, "second\n");
  });

  test("YAML from a client that keeps its side open is answered too", async () => {
    const id = uniqueId("yaml-open");
    const answer = await rawExchange(sock, `id: ${id}\ntoNode: ship1\nmethod: cliCommand\nmethodArgs: [echo, open]\n`, {
      keepOpen: true,
      timeoutMs: 15_000,
    });
    assert.ok(answer.closedByNode);
    assert.deepEqual(answer.lines, [`accepted ${id} ship1 cliCommand`]);
    await assertDone(id, "open\n");
  });

  // Node's timers stop at 2^31-1 ms (about 24.8 days); a longer one would fire at once. Such values are
  // refused at input with the field named, and the largest allowed value still waits as asked.
  test("a timeout past the timer limit (30 days) is refused at input, naming the field", async () => {
    for (const field of ["methodTimeout", "ACKTimeout", "retryWait", "replyACKTimeout", "replyMethodTimeout"]) {
      const [answer] = await fleet.send("central", { ...valid(uniqueId("long")), [field]: 30 * 24 * 3600 });
      assert.ok(answer && !answer.ok, `${field}: ${JSON.stringify(answer)}`);
      assert.match(answer.error, new RegExp(`message 0, field "${field}": must be at most 2147483`));
    }
  });

  test("the largest methodTimeout and ACKTimeout run the command to the end, once", async () => {
    const id = uniqueId("long-timeout");
    await fleet.sendOk("central", {
      ...valid(id),
      methodArgs: ["bash", "-c", "sleep 0.3; echo finished"],
      methodTimeout: 2_147_483,
      ACKTimeout: 2_147_483,
      retries: 0,
    });
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.exitCode, 0);
    assert.equal(m.attempt, 1, "one attempt: the receiver was up and ACKed");
    assert.equal(m.result?.data, "finished\n");
  });
});

describe("read folder", () => {
  const folder = () => fleet.node("central").readFolder;
  const failedFolder = () => join(folder(), "failed");

  /** Write the file the safe way (write elsewhere, then rename into the folder). */
  function drop(name: string, content: string): string {
    const staging = join(fleet.dir, "staging");
    mkdirSync(staging, { recursive: true });
    const tmp = join(staging, name);
    writeFileSync(tmp, content);
    const path = join(folder(), name);
    renameSync(tmp, path);
    return path;
  }

  /** The moved-aside file and its error file for `name` (moved files get a time-stamp prefix). */
  function failedPair(name: string): { moved?: string; error?: string } {
    if (!existsSync(failedFolder())) return {};
    const files = readdirSync(failedFolder());
    const moved = files.find((f) => f.endsWith(name) && f !== `${name}.error`);
    const error = files.find((f) => f.endsWith(`${name}.error`));
    return {
      ...(moved && { moved: join(failedFolder(), moved) }),
      ...(error && { error: join(failedFolder(), error) }),
    };
  }

  test("a valid file is taken in (it disappears) and its messages reach done", async () => {
    const a = uniqueId("rf-a");
    const b = uniqueId("rf-b");
    const name = `${uniqueId("valid")}.json`;
    const path = drop(name, JSON.stringify([valid(a), valid(b)]));
    await sleepUntil(() => !existsSync(path), { what: `${name} to be taken in` });
    assert.deepEqual(failedPair(name), {}, "nothing moved aside");
    await Promise.all([assertDone(a, `${a}\n`), assertDone(b, `${b}\n`)]);
  });

  test("a YAML file with the seeds' trailing-comma JSON style both work", async () => {
    const a = uniqueId("rf-yaml");
    const b = uniqueId("rf-seed");
    const yamlPath = drop(
      `${uniqueId("msg")}.yaml`,
      `id: ${a}\ntoNode: ship1\nmethod: cliCommand\nmethodArgs: [echo, yaml-file]\n`,
    );
    const seedPath = drop(
      `${uniqueId("seed")}.json`,
      `[\n    {\n        "id": "${b}",\n        "toNode": "ship1",\n        "method":"REQnCliCommand",\n        "methodArgs": ["bash","-c","echo seed"],\n        "replyMethod":"REQToFileAppend",\n    }\n]\n`,
    );
    await sleepUntil(() => !existsSync(yamlPath) && !existsSync(seedPath), { what: "both files to be taken in" });
    await assertDone(a, "yaml-file\n");
    await assertDone(b, "seed\n");
  });

  test("a file with valid and invalid messages: the valid ones run, the file is moved to failed/ with an error file", async () => {
    const a = uniqueId("mix-a");
    const b = uniqueId("mix-b");
    const name = `${uniqueId("mixed")}.json`;
    const content = JSON.stringify([
      valid(a),
      { toNode: "ship1", method: "nope" },
      valid(b),
      { ...valid(uniqueId("z")), fileName: "../x" },
    ]);
    const path = drop(name, content);
    await sleepUntil(() => !existsSync(path) && failedPair(name).error !== undefined, {
      what: `${name} to be moved aside`,
    });
    const { moved, error } = failedPair(name);
    assert.ok(moved, "the file itself is kept in failed/");
    assert.equal(readFileSync(moved, "utf8"), content, "moved unchanged");
    const lines = readFileSync(error as string, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    assert.equal(lines.length, 4, lines.join("\n"));
    assert.equal(lines[0], `accepted ${a} ship1 cliCommand`);
    assert.match(lines[1] as string, /^error message 1\b.*"method"/);
    assert.equal(lines[2], `accepted ${b} ship1 cliCommand`);
    assert.match(lines[3] as string, /^error message 3\b.*"fileName"/);
    await Promise.all([assertDone(a, `${a}\n`), assertDone(b, `${b}\n`)]);
  });

  test("an unparseable file is moved aside with an error file", async () => {
    const name = `${uniqueId("broken")}.json`;
    const path = drop(name, '{"toNode": "ship1", "method": "cliCommand", "methodArgs": [');
    await sleepUntil(() => !existsSync(path) && failedPair(name).error !== undefined, {
      what: `${name} to be moved aside`,
    });
    const { moved, error } = failedPair(name);
    assert.ok(moved);
    const text = readFileSync(error as string, "utf8");
    assert.match(text, /^error /);
    assert.match(text, /JSON|YAML/);
    centralAlive();
  });

  test('files starting with "." or ending ".tmp" are left alone', async () => {
    const hiddenId = uniqueId("hidden");
    const tmpId = uniqueId("tmp");
    const hidden = join(folder(), `.${uniqueId("hidden")}.json`);
    const partial = join(folder(), `${uniqueId("partial")}.json.tmp`);
    writeFileSync(hidden, JSON.stringify(valid(hiddenId)));
    writeFileSync(partial, JSON.stringify(valid(tmpId)));
    // A sentinel written after them: once it is taken in, the scanner has looked at the others too.
    const sentinelId = uniqueId("sentinel");
    const sentinel = drop(`${uniqueId("sentinel")}.json`, JSON.stringify(valid(sentinelId)));
    await sleepUntil(() => !existsSync(sentinel), { what: "the sentinel file to be taken in" });
    await assertDone(sentinelId);
    assert.ok(existsSync(hidden), "the dot file is still there");
    assert.ok(existsSync(partial), "the .tmp file is still there");
    for (const id of [hiddenId, tmpId]) {
      await assert.rejects(fleet.status("central", id), /no message with id/, `${id} was not taken in`);
    }
  });
});
