/**
 * src/message/parse.ts and document.ts on their own (no broker): JSON and YAML
 * documents, the seeds' trailing-comma JSON, the JSON scanner an input feeds
 * chunk by chunk, every field a message may carry with the node's defaults, toNodes fan-out, seed aliases, and bad input refused per message
 * with an error that names the field and the message's index.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MessageInputError } from "../src/errors.js";
import { JsonScanner } from "../src/message/document.js";
import type { Message } from "../src/message/message.js";
import { type MessageDefaults, type ParseOutcome, parseMessages } from "../src/message/parse.js";

/** Distinct values, so a test can tell which default was applied where. */
const DEFAULTS: MessageDefaults = { ACKTimeout: 7, retries: 4, methodTimeout: 13 };

const base = { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "hi"] };

function parse(doc: unknown, defaults = DEFAULTS): ParseOutcome[] {
  return parseMessages(typeof doc === "string" ? doc : JSON.stringify(doc), defaults);
}

/** Every message of a document that must be fully valid. */
function ok(doc: unknown, defaults = DEFAULTS): Message[] {
  const outcomes = parse(doc, defaults);
  const errors = outcomes.flatMap((o) => ("error" in o ? [o.error.message] : []));
  assert.deepEqual(errors, [], "expected every message to be accepted");
  return outcomes.flatMap((o) => ("messages" in o ? o.messages : []));
}

function one(doc: unknown, defaults = DEFAULTS): Message {
  const messages = ok(doc, defaults);
  assert.equal(messages.length, 1);
  return messages[0] as Message;
}

/** The error of a one-message document that must be refused. */
function refused(doc: unknown): MessageInputError {
  const outcomes = parse(doc);
  assert.equal(outcomes.length, 1, `expected one outcome, got ${JSON.stringify(outcomes)}`);
  const o = outcomes[0] as ParseOutcome;
  assert.ok("error" in o, `expected an error, got ${JSON.stringify(o)}`);
  assert.ok(o.error instanceof MessageInputError, "the error is a MessageInputError");
  return o.error;
}

/** Refused at `index`, blaming `field`, and the text says both. */
function assertFieldError(err: MessageInputError, field: string, index = 0): void {
  assert.equal(err.field, field, `field of: ${err.message}`);
  assert.equal(err.index, index, `index of: ${err.message}`);
  assert.match(err.message, new RegExp(`message ${index}\\b`));
  assert.ok(err.message.includes(`"${field}"`), `"${err.message}" names the field ${field}`);
}

describe("documents", () => {
  test("one JSON object gives one message", () => {
    const m = one(base);
    assert.equal(m.toNode, "ship1");
    assert.equal(m.method, "cliCommand");
    assert.deepEqual(m.methodArgs, ["echo", "hi"]);
  });

  test("a JSON array gives one outcome per object, in order, with its index", () => {
    const outcomes = parse([
      { ...base, toNode: "a" },
      { ...base, toNode: "b" },
      { ...base, toNode: "c" },
    ]);
    assert.equal(outcomes.length, 3);
    outcomes.forEach((o, i) => {
      assert.equal(o.index, i);
      assert.ok("messages" in o);
      assert.equal(o.messages[0]?.toNode, ["a", "b", "c"][i]);
    });
  });

  test("one YAML object", () => {
    const m = one("toNode: ship1\nmethod: cliCommand\nmethodArgs:\n  - bash\n  - -c\n  - uptime\nACKTimeout: 5\n");
    assert.equal(m.toNode, "ship1");
    assert.deepEqual(m.methodArgs, ["bash", "-c", "uptime"]);
    assert.equal(m.ACKTimeout, 5);
  });

  test("a YAML list of objects", () => {
    const messages = ok(
      "- toNode: ship1\n  method: REQCliCommand\n  methodArgs: [echo, one]\n- toNode: ship2\n  method: ping\n",
    );
    assert.deepEqual(
      messages.map((m) => [m.toNode, m.method]),
      [
        ["ship1", "cliCommand"],
        ["ship2", "ping"],
      ],
    );
  });

  test("YAML numbers and booleans in methodArgs become text", () => {
    const m = one("toNode: ship1\nmethod: cliCommand\nmethodArgs: [sleep, 1, true]\n");
    assert.deepEqual(m.methodArgs, ["sleep", "1", "true"]);
  });

  test("the seeds' JSON with a trailing comma is read (seed example REQnCliCommand)", () => {
    const seed = `[
    {
        "directory":"some/cli/command",
        "fileName":"cli.result",
        "toNode": "ship2",
        "method":"REQnCliCommand",
        "methodArgs": ["bash","-c","docker ps -a"],
        "replyMethod":"REQToFileAppend",
    }
]`;
    const m = one(seed);
    assert.equal(m.toNode, "ship2");
    assert.equal(m.method, "cliCommand");
    assert.deepEqual(m.methodArgs, ["bash", "-c", "docker ps -a"]);
    assert.equal(m.replyMethod, "fileAppend");
    assert.equal(m.directory, "some/cli/command");
    assert.equal(m.fileName, "cli.result");
  });

  test("the seeds' first example (absolute result directory, all timeouts) is read unchanged", () => {
    const seed = `[
    {
        "directory":"/var/cli/command_result/",
        "fileName": "some-file-name.result",
        "toNode": "ship1",
        "methodArgs": ["bash","-c","sleep 5 & tree ./"],
        "method":"REQCliCommand",
        "replyMethod":"REQToFileAppend",
        "ACKTimeout":5,
        "retries":3,
        "replyACKTimeout":5,
        "replyRetries":3,
        "methodTimeout": 10
    }
]`;
    const m = one(seed);
    assert.equal(m.directory, "/var/cli/command_result/");
    assert.equal(m.fileName, "some-file-name.result");
    assert.deepEqual([m.ACKTimeout, m.retries, m.replyACKTimeout, m.replyRetries, m.methodTimeout], [5, 3, 5, 3, 10]);
  });

  test("a trailing comma after the last array element is read too", () => {
    const messages = ok(`[{"toNode":"ship1","method":"ping"},{"toNode":"ship2","method":"ping"},]`);
    assert.deepEqual(
      messages.map((m) => m.toNode),
      ["ship1", "ship2"],
    );
  });

  for (const [name, text] of [
    ["{{{", "{{{"],
    ["unterminated JSON", '{"toNode": "ship1", "method": "cliCommand", "methodArgs": ["echo"'],
    ["a lone closing bracket", "]"],
    ["YAML with a tab-indented mapping error", "toNode: ship1\n\tmethod: : :\n  - ["],
    ["empty input", ""],
    ["only whitespace", "  \n\t \n"],
    ["binary bytes", Buffer.from([0x00, 0xff, 0x7b, 0x5b, 0xfe, 0x01, 0x22, 0x0a, 0x3a, 0x3a]).toString("latin1")],
  ] as const) {
    test(`garbage (${name}) gives one error outcome and does not throw`, () => {
      let outcomes: ParseOutcome[] = [];
      assert.doesNotThrow(() => {
        outcomes = parseMessages(text, DEFAULTS);
      });
      assert.ok(outcomes.length >= 1, "at least one outcome");
      for (const o of outcomes) {
        assert.ok("error" in o, `expected only errors, got ${JSON.stringify(o)}`);
        assert.ok(o.error instanceof MessageInputError);
        assert.ok(o.error.message.length > 0);
      }
    });
  }

  test("a document that does not parse is one outcome with no index", () => {
    const outcomes = parse("{{{");
    assert.equal(outcomes.length, 1);
    const o = outcomes[0] as ParseOutcome;
    assert.ok("error" in o);
    assert.equal(o.index, undefined);
    assert.match(o.error.message, /JSON|YAML/);
  });

  test("non-objects (number, string, null, array) are refused per position", () => {
    const outcomes = parse(`[42, "text", null, [1, 2], {"toNode": "ship1", "method": "ping"}]`);
    assert.equal(outcomes.length, 5);
    for (const i of [0, 1, 2, 3]) {
      const o = outcomes[i] as ParseOutcome;
      assert.ok("error" in o, `outcome ${i} is an error`);
      assert.equal(o.index, i);
      assert.match(o.error.message, new RegExp(`message ${i}\\b`));
    }
    assert.ok("messages" in (outcomes[4] as ParseOutcome));
  });
});

describe("the JSON scanner, fed chunk by chunk", () => {
  test("tells where a document ends, across chunks, ignoring brackets and quotes inside strings", () => {
    const scanner = new JsonScanner({ firstValueOnly: true });
    const chunks = ['  [{"data": "a ] } \\', '" [ {", "n"', ": [1, [2]]}", "]", " trailing"];
    const closedAfter = chunks.map((chunk) => scanner.feed(chunk));
    assert.deepEqual(closedAfter, [false, false, false, true, true]);
    assert.equal(scanner.maxDepth, 4);
  });

  test("text that does not start with a bracket is not JSON it can follow", () => {
    const scanner = new JsonScanner({ firstValueOnly: true });
    assert.equal(scanner.feed("toNode: ship1\n"), false);
    assert.equal(scanner.possible, false);
  });
});

describe("fields and defaults (docs/MESSAGES.md)", () => {
  test("left-out fields take the defaults given by the node", () => {
    const m = one({ toNode: "ship1", method: "cliCommand", methodArgs: ["true"] });
    assert.equal(m.ACKTimeout, 7);
    assert.equal(m.retries, 4);
    assert.equal(m.methodTimeout, 13);
    assert.equal(m.retryWait, 0);
    assert.equal(m.replyACKTimeout, 7);
    assert.equal(m.replyRetries, 4);
    assert.equal(m.replyMethodTimeout, 13);
    assert.equal(m.replyMethod, "fileAppend");
    assert.deepEqual(m.replyMethodArgs, []);
    assert.equal(m.directory, undefined);
    assert.equal(m.fileName, undefined);
    assert.equal(m.data, undefined);
    assert.equal(typeof m.id, "string");
    assert.ok(m.id.length > 0);
  });

  test("other defaults give other values: nothing is hard-wired", () => {
    const m = one({ toNode: "ship1", method: "ping" }, { ACKTimeout: 2, retries: 9, methodTimeout: -1 });
    assert.deepEqual([m.ACKTimeout, m.retries, m.methodTimeout, m.replyACKTimeout, m.replyRetries], [2, 9, -1, 2, 9]);
  });

  test("every field given is carried as given", () => {
    const m = one({
      id: "my-id.1",
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["bash", "-c", "uptime"],
      replyMethod: "file",
      replyMethodArgs: ["x", "y"],
      ACKTimeout: 3,
      retries: 5,
      retryWait: 2,
      replyACKTimeout: 6,
      replyRetries: 1,
      methodTimeout: -1,
      replyMethodTimeout: 30,
      directory: "results/uptime",
      fileName: "uptime.txt",
      data: "aGVsbG8=",
      dataEncoding: "base64",
    });
    assert.equal(m.id, "my-id.1");
    assert.equal(m.toNode, "ship1");
    assert.equal(m.method, "cliCommand");
    assert.deepEqual(m.methodArgs, ["bash", "-c", "uptime"]);
    assert.equal(m.replyMethod, "file");
    assert.deepEqual(m.replyMethodArgs, ["x", "y"]);
    assert.equal(m.ACKTimeout, 3);
    assert.equal(m.retries, 5);
    assert.equal(m.retryWait, 2);
    assert.equal(m.replyACKTimeout, 6);
    assert.equal(m.replyRetries, 1);
    assert.equal(m.methodTimeout, -1);
    assert.equal(m.replyMethodTimeout, 30);
    assert.equal(m.directory, "results/uptime");
    assert.equal(m.fileName, "uptime.txt");
    assert.equal(m.data, "aGVsbG8=");
    assert.equal(m.dataEncoding, "base64");
  });

  test("ACKTimeout 0 (fire and forget) is kept", () => {
    const m = one({ ...base, ACKTimeout: 0, retries: 0 });
    assert.equal(m.ACKTimeout, 0);
    assert.equal(m.retries, 0);
  });

  test('replyMethod "none" means no reply', () => {
    assert.equal(one({ ...base, replyMethod: "none" }).replyMethod, "none");
  });

  test("ping's reply defaults to pong", () => {
    assert.equal(one({ toNode: "ship1", method: "ping" }).replyMethod, "pong");
  });

  test("data as an array of lines (the seeds' REQOpCommand form) becomes text", () => {
    assert.equal(one({ toNode: "ship1", method: "console", data: ["line 1", "line 2"] }).data, "line 1\nline 2");
  });

  test("operation (legacy object form) is carried", () => {
    const m = one({ toNode: "ship1", method: "console", operation: { opCmd: "ps", opArg: {} } });
    assert.deepEqual(m.operation, { opCmd: "ps", opArg: {} });
  });

  test("schedule [interval, total] is accepted and carried; a malformed one is refused", () => {
    const m = one({ ...base, schedule: [10, 60] });
    assert.deepEqual(m.schedule, [10, 60]);
    for (const bad of [[0, 60], [10], "10,60", [1.5, 3], [-1, 5]])
      assertFieldError(refused({ ...base, schedule: bad }), "schedule");
  });

  test("a client-chosen id with one target is kept as is", () => {
    assert.equal(one({ ...base, id: "X" }).id, "X");
    assert.equal(one({ ...base, toNode: undefined, toNodes: ["ship1"], id: "X" }).id, "X");
  });

  test("assigned ids are unique", () => {
    const messages = ok(Array.from({ length: 50 }, () => base));
    assert.equal(new Set(messages.map((m) => m.id)).size, 50);
  });
});

describe("toNodes fan-out", () => {
  test("one message per node, each with its own id", () => {
    const messages = ok({
      toNodes: ["ship1", "ship2", "ship3"],
      method: "cliCommand",
      methodArgs: ["uptime"],
      ACKTimeout: 2,
    });
    assert.deepEqual(
      messages.map((m) => m.toNode),
      ["ship1", "ship2", "ship3"],
    );
    assert.equal(new Set(messages.map((m) => m.id)).size, 3);
    for (const m of messages) {
      assert.equal(m.method, "cliCommand");
      assert.deepEqual(m.methodArgs, ["uptime"]);
      assert.equal(m.ACKTimeout, 2);
    }
  });

  test('client id X with two nodes gives "X@ship1" and "X@ship2"', () => {
    const messages = ok({ id: "X", toNodes: ["ship1", "ship2"], method: "ping" });
    assert.deepEqual(
      messages.map((m) => [m.id, m.toNode]),
      [
        ["X@ship1", "ship1"],
        ["X@ship2", "ship2"],
      ],
    );
  });

  test("toNode and toNodes together target all of them", () => {
    const messages = ok({ id: "Y", toNode: "ship1", toNodes: ["ship2"], method: "ping" });
    assert.deepEqual(
      messages.map((m) => m.id),
      ["Y@ship1", "Y@ship2"],
    );
  });

  test("a fan-out is one outcome (one index) with several messages", () => {
    const outcomes = parse([{ toNodes: ["a", "b"], method: "ping" }, base]);
    assert.equal(outcomes.length, 2);
    const first = outcomes[0] as ParseOutcome;
    assert.ok("messages" in first);
    assert.equal(first.messages.length, 2);
    assert.equal(outcomes[1]?.index, 1);
  });

  test("the same node twice does not give two messages with one id", () => {
    const messages = ok({ id: "Z", toNodes: ["ship1", "ship1", "ship2"], method: "ping" });
    assert.equal(new Set(messages.map((m) => m.id)).size, messages.length);
  });

  test("a bad node name inside toNodes is refused, naming toNodes", () => {
    assertFieldError(refused({ toNodes: ["ship1", "bad.node"], method: "ping" }), "toNodes");
  });
});

describe("seed method names", () => {
  const aliases: [string, string][] = [
    ["REQCliCommand", "cliCommand"],
    ["REQnCliCommand", "cliCommand"],
    ["REQToConsole", "console"],
    ["REQToFile", "file"],
    ["REQToFileAppend", "fileAppend"],
    ["REQPing", "ping"],
    ["REQPong", "pong"],
    ["REQHello", "hello"],
    ["REQErrorLog", "errorLog"],
    ["REQCliCommandCont", "cliCommandCont"],
    ["REQnCliCommandCont", "cliCommandCont"],
    ["REQTailFile", "tailFile"],
  ];
  for (const [seed, canonical] of aliases) {
    test(`${seed} is ${canonical}`, () => {
      const m = one({ toNode: "ship1", method: seed, methodArgs: ["echo"] });
      assert.equal(m.method, canonical);
    });
  }

  test("seed names work as replyMethod", () => {
    assert.equal(one({ ...base, replyMethod: "REQToFileAppend" }).replyMethod, "fileAppend");
    assert.equal(one({ ...base, replyMethod: "REQToFile" }).replyMethod, "file");
    assert.equal(one({ ...base, replyMethod: "REQToConsole" }).replyMethod, "console");
  });

  test("REQHttpGet is httpGet", () => {
    assert.equal(
      one({ toNode: "ship1", method: "REQHttpGet", methodArgs: ["https://example.com/"] }).method,
      "httpGet",
    );
  });

  for (const [seed, canonical] of [
    ["REQOpProcessList", "opProcessList"],
    ["REQOpProcessStart", "opProcessStart"],
    ["REQOpProcessStop", "opProcessStop"],
  ]) {
    test(`${seed} is ${canonical}`, () => {
      assert.equal(one({ toNode: "ship1", method: seed, methodArgs: ["x"] }).method, canonical);
    });
  }

  test("REQOpCommand with an operation is the op method it stands for", () => {
    assert.equal(one({ toNode: "ship1", method: "REQOpCommand", operation: { opCmd: "ps" } }).method, "opProcessList");
    const start = one({
      toNode: "ship1",
      method: "REQOpCommand",
      operation: { opCmd: "startProc", opArg: { method: "REQHttpGet", allowedNodes: ["central"] } },
    });
    assert.equal(start.method, "opProcessStart");
    assert.deepEqual(start.methodArgs, ["REQHttpGet", "central"]);
    assertFieldError(refused({ toNode: "ship1", method: "REQOpCommand" }), "operation");
  });
});

describe("bad input is refused, naming the field and the message index", () => {
  test("unknown field", () => {
    const err = refused({ ...base, colour: "blue" });
    assertFieldError(err, "colour");
    assert.match(err.message, /unknown field/);
  });

  test("field names are case sensitive (seed spelling ACKTimeout)", () => {
    assertFieldError(refused({ ...base, ackTimeout: 5 }), "ackTimeout");
  });

  const wrongTypes: [string, unknown][] = [
    ["toNode", 5],
    ["toNodes", "ship1"],
    ["method", ["cliCommand"]],
    ["methodArgs", "echo hi"],
    ["ACKTimeout", "5"],
    ["ACKTimeout", 1.5],
    ["retries", -1],
    ["retries", true],
    ["retryWait", "later"],
    ["replyACKTimeout", {}],
    ["replyRetries", "3"],
    ["methodTimeout", -2],
    ["replyMethodTimeout", "10"],
    ["directory", 7],
    ["fileName", ["a"]],
    ["data", 12],
    ["dataEncoding", "hex"],
    ["replyMethodArgs", "a b"],
    ["operation", "ps"],
    ["id", "has space"],
    ["id", 42],
  ];
  for (const [field, value] of wrongTypes) {
    test(`wrong type or value: ${field} = ${JSON.stringify(value)}`, () => {
      assertFieldError(refused({ ...base, [field]: value }), field);
    });
  }

  test("a non-string element of methodArgs names the element", () => {
    const err = refused({ ...base, methodArgs: ["echo", { a: 1 }] });
    assert.equal(err.index, 0);
    assert.match(err.field ?? "", /^methodArgs/);
    assert.match(err.message, /methodArgs/);
  });

  test("unknown method", () => {
    const err = refused({ toNode: "ship1", method: "rebootTheWorld" });
    assertFieldError(err, "method");
    assert.match(err.message, /rebootTheWorld/);
  });

  test("missing method", () => {
    assertFieldError(refused({ toNode: "ship1" }), "method");
  });

  test("missing toNode", () => {
    const err = refused({ method: "cliCommand", methodArgs: ["echo"] });
    assertFieldError(err, "toNode");
  });

  test("empty toNodes and no toNode", () => {
    assertFieldError(refused({ toNodes: [], method: "ping" }), "toNode");
  });

  for (const [what, name] of [
    ["a dot", "ship.1"],
    ["a space", "ship 1"],
    ['"*"', "ship*"],
    ['">"', ">"],
    ["a tab", "ship\t1"],
    ["nothing (empty)", ""],
  ] as const) {
    test(`node name with ${what} is refused with a reason`, () => {
      const err = refused({ toNode: name, method: "ping" });
      assertFieldError(err, "toNode");
      if (name !== "") assert.match(err.message, /dot|space|"\*"|">"/);
    });
  }

  for (const fileName of ["a/b", "../x", "/etc/passwd", "..", "a\\b"]) {
    test(`fileName ${JSON.stringify(fileName)} is refused`, () => {
      assertFieldError(refused({ ...base, fileName }), "fileName");
    });
  }

  for (const directory of ["..", "../up", "a/../../b", "a/..", "a\\..\\b"]) {
    test(`directory ${JSON.stringify(directory)} is refused`, () => {
      const err = refused({ ...base, directory });
      assertFieldError(err, "directory");
      assert.match(err.message, /\.\./);
    });
  }

  test("a file/fileAppend request with an absolute directory is refused", () => {
    assertFieldError(
      refused({ toNode: "ship1", method: "file", directory: "/etc", fileName: "x", data: "y" }),
      "directory",
    );
  });

  for (const replyMethod of ["cliCommand", "REQCliCommand", "hello", "errorLog", "ping"]) {
    test(`replyMethod ${replyMethod} cannot take a reply and is refused`, () => {
      const err = refused({ ...base, replyMethod });
      assertFieldError(err, "replyMethod");
    });
  }

  test("an unknown replyMethod is refused", () => {
    assertFieldError(refused({ ...base, replyMethod: "toTheMoon" }), "replyMethod");
  });

  test("cliCommand without a command is refused", () => {
    assertFieldError(refused({ toNode: "ship1", method: "cliCommand", methodArgs: [] }), "methodArgs");
  });
});

describe("batches: the valid messages still come out", () => {
  test("one outcome per object; errors carry their own index", () => {
    const outcomes = parse([
      { ...base, id: "v0" },
      { ...base, colour: "blue" },
      { ...base, id: "v2", toNodes: ["ship2"] },
      { toNode: "ship1", method: "nope" },
      { ...base, id: "v4" },
      { ...base, toNode: "bad.name" },
    ]);
    assert.equal(outcomes.length, 6);
    assert.deepEqual(
      outcomes.map((o) => o.index),
      [0, 1, 2, 3, 4, 5],
    );

    const good = outcomes.flatMap((o) => ("messages" in o ? o.messages.map((m) => m.id) : []));
    assert.deepEqual(good, ["v0", "v2@ship1", "v2@ship2", "v4"]);

    const errs = outcomes.flatMap((o) => ("error" in o ? [o.error] : []));
    assert.deepEqual(
      errs.map((e) => [e.index, e.field]),
      [
        [1, "colour"],
        [3, "method"],
        [5, "toNode"],
      ],
    );
    for (const e of errs) assert.match(e.message, new RegExp(`message ${e.index}\\b`));
  });

  test("a YAML batch with a bad message in the middle", () => {
    const outcomes = parse(
      "- toNode: ship1\n  method: ping\n- toNode: ship1\n  method: ping\n  ACKTimeout: soon\n- toNode: ship2\n  method: ping\n",
    );
    assert.equal(outcomes.length, 3);
    assert.ok("messages" in (outcomes[0] as ParseOutcome));
    const mid = outcomes[1] as ParseOutcome;
    assert.ok("error" in mid);
    assertFieldError(mid.error, "ACKTimeout", 1);
    assert.ok("messages" in (outcomes[2] as ParseOutcome));
  });

  test("nothing is thrown for any element type", () => {
    assert.doesNotThrow(() => parse(`[true, false, 0, -1, 1e400, "", {}, [], [[]], {"toNode": {}}, {"method": null}]`));
  });
});
