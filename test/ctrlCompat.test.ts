/**
 * Message files written for ctrl (the Go system the seeds grew into), taken as they are: the files in
 * test/fixtures/ctrl/ — JSON and YAML, one object and arrays, in ctrl's forms (`data` as the arguments,
 * ctrl's method names in any case, an empty `toNode` beside `toNodes`, every field of ctrl's message
 * written out with its empty value) — are handed UNCHANGED to a real node, by `steward send FILE` and
 * through its socket, and their results must arrive where they say. What this version does not have
 * (ctrl's own relay hop fields) is refused with a reason that says so, while the messages beside it go through.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import type { AcceptAnswer } from "../src/inputs/protocol.js";
import type { Message } from "../src/message/message.js";
import { canonicalMethod, METHOD_NAMES, methodNames } from "../src/message/methods.js";
import { type ParseOutcome, parseMessages } from "../src/message/parse.js";
import { type CliResult, runCli } from "./helpers/cli-helpers.js";
import { waitFile } from "./helpers/methods-helpers.js";

const FIXTURES = join(import.meta.dirname, "fixtures", "ctrl");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

// ---- The rules, one by one, on the parser alone ------------------------------------------------

const DEFAULTS = { ACKTimeout: 7, retries: 4, methodTimeout: 13 };
const parse = (doc: unknown): ParseOutcome[] => parseMessages(JSON.stringify(doc), DEFAULTS);

function one(doc: unknown): Message {
  const [outcome, ...rest] = parse(doc);
  assert.equal(rest.length, 0);
  assert.ok(outcome && "messages" in outcome, JSON.stringify(outcome && "error" in outcome && outcome.error.message));
  assert.equal(outcome.messages.length, 1);
  return outcome.messages[0] as Message;
}

function refused(doc: unknown): { field: string | undefined; message: string } {
  const [outcome] = parse(doc);
  assert.ok(outcome && "error" in outcome, `expected a refusal, got ${JSON.stringify(outcome)}`);
  return { field: outcome.error.field, message: outcome.error.message };
}

describe("ctrl forms, parsed", () => {
  test("data as an array of strings is methodArgs for a method that runs from its arguments", () => {
    const m = one({ toNode: "ship1", method: "cliCommand", data: ["bash", "-c", "ls"] });
    assert.deepEqual(m.methodArgs, ["bash", "-c", "ls"]);
    assert.equal(m.data, undefined);
    assert.deepEqual(one({ toNode: "ship1", method: "tailFile", data: ["/var/log/syslog"] }).methodArgs, [
      "/var/log/syslog",
    ]);
    assert.deepEqual(one({ toNode: "ship1", method: "REQHttpGet", data: ["https://example.com/"] }).methodArgs, [
      "https://example.com/",
    ]);
  });

  test("data stays the payload: a string, beside methodArgs, for a reply method, and with non-strings", () => {
    assert.equal(one({ toNode: "ship1", method: "cliCommand", methodArgs: ["ls"], data: "text" }).data, "text");
    const both = one({ toNode: "ship1", method: "cliCommand", methodArgs: ["ls"], data: ["a", "b"] });
    assert.deepEqual([both.methodArgs, both.data], [["ls"], "a\nb"]);
    const lines = one({ toNode: "ship1", method: "toConsole", data: ["line 1", "line 2"] });
    assert.deepEqual([lines.methodArgs, lines.data], [[], "line 1\nline 2"]);
    // A number is not ctrl's argument list: it is read as before (the payload, as text).
    assert.equal(one({ toNode: "ship1", method: "cliCommand", methodArgs: ["ls"], data: [1, 2] }).data, "1\n2");
    // A string data is never the arguments: the command is still missing.
    assert.equal(refused({ toNode: "ship1", method: "cliCommand", data: "ls" }).field, "methodArgs");
  });

  test("every ctrl spelling of a method name, in any case, means the method", () => {
    const ctrl: [string, string][] = [
      ["cliCommand", "cliCommand"],
      ["cliCommandCont", "cliCommandCont"],
      ["toConsole", "console"],
      ["toFile", "file"],
      ["toFileNACK", "file"],
      ["toFileAppend", "fileAppend"],
      ["httpGet", "httpGet"],
      ["tailFile", "tailFile"],
      ["hello", "hello"],
      ["errorLog", "errorLog"],
      ["ping", "ping"],
      ["pong", "pong"],
      ["none", "none"],
      ["opProcessList", "opProcessList"],
      ["opProcessStart", "opProcessStart"],
      ["opProcessStop", "opProcessStop"],
      ["REQnCliCommandCont", "cliCommandCont"],
    ];
    for (const [name, method] of ctrl) {
      for (const spelling of [
        name,
        name.toLowerCase(),
        name.toUpperCase(),
        name.startsWith("REQ") ? name : `REQ${name[0]?.toUpperCase()}${name.slice(1)}`,
      ]) {
        assert.equal(canonicalMethod(spelling), method, spelling);
      }
    }
    // Every listed name of every method works in lower case too, and as a replyMethod.
    for (const method of METHOD_NAMES)
      for (const name of methodNames(method)) assert.equal(canonicalMethod(name.toLowerCase()), method, name);
    assert.equal(
      one({ toNode: "ship1", method: "cliCommand", methodArgs: ["ls"], replyMethod: "TOFILE" }).replyMethod,
      "file",
    );
  });

  test("ctrl's methods this version does not have are refused as not supported, not as unknown", () => {
    for (const name of ["subCopySrc", "httpGetScheduled", "keysAllow", "aclAddCommand"]) {
      const r = refused({ toNode: "ship1", method: name });
      assert.equal(r.field, "method");
      assert.match(r.message, /not supported by this version/, r.message);
    }
    assert.match(refused({ toNode: "ship1", method: "bogus" }).message, /unknown method "bogus"/);
  });

  test("an empty toNode beside toNodes is ignored; alone it is an error", () => {
    const ms = parse({ toNode: "", toNodes: ["central"], method: "ping" });
    assert.deepEqual(
      ms.flatMap((o) => ("messages" in o ? o.messages.map((m) => m.toNode) : [])),
      ["central"],
    );
    assert.equal(refused({ toNode: "", method: "ping" }).field, "toNode");
    assert.equal(refused({ toNode: "", toNodes: [], method: "ping" }).field, "toNode");
  });

  test("ctrl's fields: left out when empty (as ctrl writes them), refused with what they would need when set", () => {
    const empty = {
      id: 0,
      fromNode: "",
      isReply: false,
      isSubPublishedMsg: false,
      argSignature: null,
      PreviousMessage: null,
      jetstreamToNode: "",
      relayViaNode: "",
      relayReplyMethod: "",
      relayOriginalViaNode: "",
      relayFromNode: "",
      relayToNode: "",
      relayOriginalMethod: "",
    };
    const m = one({ toNode: "ship1", method: "ping", ...empty });
    assert.match(m.id, /^[0-9A-Z]{26}$/, "ctrl's empty id is not kept: Steward gives its own");
    for (const [field, value, reason] of [
      ["relayOriginalViaNode", "ship1", /set by the relay node on its own hops in ctrl/],
      ["relayToNode", "ship2", /Steward's relay needs only relayViaNode/],
      ["relayReplyMethod", "toConsole", /name the relay node in relayViaNode/],
      ["jetstreamToNode", "ship1", /JetStream .* not supported by this version/],
      ["fromNode", "ship9", /set by the node that sends the message/],
      ["isReply", true, /set by the node that sends the message/],
      ["argSignature", "AAAA", /Steward signs every message/],
    ] as const) {
      const r = refused({ toNode: "ship1", method: "ping", [field]: value });
      assert.equal(r.field, field);
      assert.match(r.message, reason);
    }
    assert.match(refused({ toNode: "ship1", method: "ping", useDetectedShell: true }).message, /unknown field/);
  });

  test("relayViaNode and relayReplyMethod are taken: the reply is handled at the origin with relayReplyMethod", () => {
    const m = one({
      toNode: "ship2",
      relayViaNode: "ship1",
      relayReplyMethod: "toConsole",
      replyMethod: "none",
      method: "cliCommand",
      methodArgs: ["echo", "relayed"],
    });
    assert.equal(m.relayViaNode, "ship1");
    assert.equal(m.replyMethod, "console");
    assert.match(refused({ toNode: "ship1", relayViaNode: "ship1", method: "ping" }).message, /cannot relay to itself/);
  });
});

// ---- Through a real node -------------------------------------------------------------------

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("ctrl", ["central", "ship1", "ship2"]);
});
after(() => fleet.close());

const resultFile = (...path: string[]) => join(fleet.node("central").dataFolder, ...path);

/** Each message of a document must be accepted; returns the ids with their target and method. */
function allAccepted(answers: AcceptAnswer[], count: number): { id: string; toNode: string; method: string }[] {
  assert.equal(answers.length, count, JSON.stringify(answers));
  return answers.map((a, i) => {
    assert.ok(a.ok, `message ${i} accepted: ${JSON.stringify(a)}`);
    return a;
  });
}

async function allDone(ids: string[]): Promise<void> {
  for (const id of ids) {
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.exitCode, 0, JSON.stringify(m));
  }
}

/** `steward send FILE` against central's socket. */
function stewardSend(file: string): Promise<CliResult> {
  return runCli(["send", "--socket-folder", join(fleet.node("central").opts.dir, "tmp"), join(FIXTURES, file)], {
    cwd: fleet.dir,
  });
}

describe("ctrl message files, unchanged, through a real node", () => {
  test("`steward send` a single JSON object with data as the arguments and toFileAppend", async () => {
    const r = await stewardSend("cli-command-data.json");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const ids = [...r.stdout.matchAll(/^accepted (\S+) ship1 cliCommand$/gm)].map((m) => m[1] as string);
    assert.equal(ids.length, 1, r.stdout);
    await allDone(ids);
    assert.equal(await waitFile(resultFile("ctrl", "data", "ship1", "data.result")), "ctrl data form\n");
  });

  test("ctrl's full message form (every field written, empty toNode beside toNodes) and lower-case names", async () => {
    const answers = allAccepted(await fleet.send("central", fixture("ctrl-marshalled.json")), 3);
    assert.deepEqual(
      answers.map((a) => [a.toNode, a.method]),
      [
        ["ship1", "cliCommand"],
        ["ship2", "cliCommand"],
        ["ship2", "cliCommand"],
      ],
    );
    await allDone(answers.map((a) => a.id));
    for (const node of ["ship1", "ship2"]) {
      assert.equal(await waitFile(resultFile("ctrl", "marshalled", node, "marshalled.result")), "every ctrl field\n");
    }
    assert.equal(await waitFile(resultFile("ctrl", "lower", "ship2", "lower.result")), "lower case names\n");
  });

  test("a YAML array: ctrl's documented methodArgs block, and data as the arguments beside an empty toNode", async () => {
    const answers = allAccepted(await fleet.send("central", fixture("cli-command.yaml")), 2);
    await allDone(answers.map((a) => a.id));
    assert.equal(
      await waitFile(resultFile("ctrl", "yaml", "ship1", "yaml.result")),
      "this is a test\nand some other test\n",
    );
    assert.equal(await waitFile(resultFile("ctrl", "yaml", "ship2", "yaml.result")), "yaml data form\n");
  });

  test("a YAML object: cliCommandCont streams its parts back to toFileAppend", async () => {
    const r = await stewardSend("cli-command-cont.yaml");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const id = /^accepted (\S+) ship2 cliCommandCont$/m.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    await allDone([id]);
    assert.equal(
      await waitFile(resultFile("ctrl", "cont", "ship2", "cont.result")),
      "cont line 1\ncont line 2\ncont line 3\n",
    );
  });

  test("toConsole prints the result on the sending node", async () => {
    const answers = allAccepted(await fleet.send("central", fixture("to-console.json")), 1);
    await allDone(answers.map((a) => a.id));
    await sleepUntil(() => fleet.node("central").stdout.includes("ctrl to console\n"), {
      what: "the result on central's stdout",
    });
  });

  test("ctrl's own relay hop fields are refused; an empty toNode alone is an error; the rest goes (a copy too)", async () => {
    const answers = await fleet.send("central", fixture("not-supported.json"));
    assert.equal(answers.length, 4, JSON.stringify(answers));
    const [relay, copy, empty, ping] = answers;
    assert.ok(relay && !relay.ok && relay.index === 0, JSON.stringify(relay));
    assert.match(relay.error, /relayToNode.*Steward's relay needs only relayViaNode/);
    // ctrl's copySrc with its three arguments (no chunk size, time or mode): copied.
    assert.ok(copy?.ok, JSON.stringify(copy));
    assert.equal((await fleet.waitState("central", copy.id)).state, "done");
    assert.ok(empty && !empty.ok && empty.index === 2, JSON.stringify(empty));
    assert.match(empty.error, /toNode.*empty/);
    assert.ok(ping?.ok, JSON.stringify(ping));
    assert.equal((await fleet.waitState("central", ping.id)).state, "done");
  });
});
