/**
 * The unix socket input of a real node, <node dir>/tmp/steward.sock: it
 * answers per message — the accepted id or the error —, the valid messages of
 * a batch run even when others are refused, a client that keeps its side open
 * or stays silent blocks no one, and garbage never takes a node down.
 */
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { after, before, describe, test } from "node:test";
import { health, submit } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { noise, rawExchange, uniqueId } from "./helpers/cli-helpers.js";
import { inputChecks } from "./helpers/inputs-helpers.js";

let fleet: Fleet;
let sock: string;
const { valid, assertDone, stillWorks, centralAlive } = inputChecks(() => fleet);

before(async () => {
  fleet = await Fleet.start("socket", ["central", "ship1"]);
  sock = fleet.node("central").socketPath;
});
after(() => fleet.close());

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
