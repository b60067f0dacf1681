/**
 * The example messages of the original design (the README of the Go system
 * Steward re-imagines), copied here verbatim and sent to Steward exactly as
 * text — trailing commas and all — through a node's socket: every one of them
 * must work with Steward unchanged.
 *
 * Methods this version has (REQCliCommand, REQnCliCommand, and the reply
 * methods REQToFile, REQToFileAppend, REQToConsole) must be accepted and
 * reach a final state with their results where the seed says; so must the
 * streaming and web methods (REQCliCommandCont, REQTailFile, REQHttpGet),
 * which end here with their reasons (no network, no such log file), and the
 * op methods (REQOpProcess*, the legacy REQOpCommand). A bad message in a
 * batch is refused by its index while the seeds beside it go through.
 *
 * The fleet is named as the seeds name it: central, ship1, ship2.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { MessageView } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import type { AcceptAnswer } from "../src/inputs/protocol.js";
import { marker, readIfExists, waitFile } from "./helpers/methods-helpers.js";

// ---- The seeds, verbatim -------------------------------------------------------------------

/** The original README, lines 22–36. */
const SEED_INTRO_CLI = `
[
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
]
`;

/** The original README, lines 148–160. */
const SEED_TIMEOUTS_CONT = `
[
    {
        "directory":"/some/result/directory/",
        "fileName":"my-syslog.log",
        "toNode": "ship2",
        "methodArgs": ["bash","-c","tail -f /var/log/syslog"],
        "replyMethod":"REQToFileAppend",
        "method":"REQnCliCommandCont",
        "ACKTimeout":3,
        "retries":3,
        "methodTimeout": 60
    }
]
`;

/** The original README, lines 207–216. */
const SEED_OP_PROCESS_LIST = `
[
    {
        "directory":"test/dir",
        "fileName":"test.result",
        "toNode": "ship2",
        "method":"REQOpProcessList",
        "methodArgs": [],
        "replyMethod":"REQToFileAppend",
    }
]
`;

/** The original README, lines 222–231. */
const SEED_OP_PROCESS_START = `
[
    {
        "directory":"test/dir",
        "fileName":"test.result",
        "toNode": "ship2",
        "method":"REQOpProcessStart",
        "methodArgs": ["REQHttpGet"],
        "replyMethod":"REQToFileAppend",
    }
]
`;

/** The original README, lines 237–246. */
const SEED_OP_PROCESS_STOP = `
[
    {
        "directory":"test/dir",
        "fileName":"test.result",
        "toNode": "ship2",
        "method":"REQOpProcessStop",
        "methodArgs": ["REQHttpGet","ship2","subscriber","199"],
        "replyMethod":"REQToFileAppend",
    }
]
`;

/** The original README, lines 254–263. */
const SEED_N_CLI_COMMAND = `
[
    {
        "directory":"some/cli/command",
        "fileName":"cli.result",
        "toNode": "ship2",
        "method":"REQnCliCommand",
        "methodArgs": ["bash","-c","docker ps -a"],
        "replyMethod":"REQToFileAppend",
    }
]
`;

/** The original README, lines 271–281. */
const SEED_N_CLI_COMMAND_CONT = `
[
    {
        "directory":"some/cli/command",
        "fileName":"cli.result",
        "toNode": "ship2",
        "method":"REQnCliCommandCont",
        "methodArgs": ["bash","-c","docker ps -a"],
        "replyMethod":"REQToFileAppend",
        "methodTimeout":10,
    }
]
`;

/** The original README, lines 287–296. */
const SEED_TAIL_FILE = `
[
    {
        "directory": "/my/tail/files/",
        "fileName": "tailfile.log",
        "toNode": "ship2",
        "method":"REQTailFile",
        "methodArgs": ["/var/log/system.log"],
        "methodTimeout": 10
    }
]
`;

/** The original README, lines 302–314. */
const SEED_HTTP_GET = `
[
    {
        "directory": "web",
        "fileName": "web.html",
        "toNode": "ship2",
        "method":"REQHttpGet",
        "methodArgs": ["https://web.ics.purdue.edu/~gchopra/class/public/pages/webdesign/05_simple.html"],
        "replyMethod":"REQToFile",
        "ACKTimeout":10,
        "retries": 3,
        "methodTimeout": 3
    }
]
`;

/** The original README, lines 322–327. */
const SEED_HELLO = `
[
    {
        "toNode": "central",
        "method":"REQHello"
    }
]
`;

/** The original README, lines 341–348. */
const SEED_TO_CONSOLE = `
[
    {
        "toNode": "ship2",
        "method":"REQOpProcessList",
        "methodArgs": [],
        "replyMethod":"REQToConsole",
    }
]
`;

/** The original README, lines 354–363. */
const SEED_TO_FILE_APPEND = `
[
    {
        "directory":"test/dir",
        "fileName":"test.result",
        "toNode": "ship2",
        "method":"REQOpProcessList",
        "methodArgs": [],
        "replyMethod":"REQToFileAppend",
    }
]
`;

/** The original README, lines 369–378. */
const SEED_TO_FILE = `
[
    {
        "directory":"test/dir",
        "fileName":"test.result",
        "toNode": "ship2",
        "method":"REQOpProcessList",
        "methodArgs": [],
        "replyMethod":"REQToFile",
    }
]
`;

/** The original README, lines 655–666. */
const SEED_NODE_TO_NODE = `
[
    {
        "directory":"/var/steward/cli-command/executed-result",
        "fileName": "some.log",
        "toNode": "ship1",
        "methodArgs": ["bash","-c","sleep 3 & tree ./"],
        "method":"REQCliCommand",
        "ACKTimeout":10,
        "retries":3,
        "methodTimeout": 4
    }
]
`;

/** The original README, lines 668–689. */
const SEED_MULTI = `
[
    {
        "directory":"cli-command-executed-result",
        "fileName": "some.log",
        "toNode": "ship1",
        "methodArgs": ["bash","-c","sleep 3 & tree ./"],
        "method":"REQCliCommand",
        "ACKTimeout":10,
        "retries":3,
        "methodTimeout": 4
    },
    {
        "directory":"cli-command-executed-result",
        "fileName": "some.log",
        "toNode": "ship2",
        "methodArgs": ["bash","-c","sleep 3 & tree ./"],
        "method":"REQCliCommand",
        "ACKTimeout":10,
        "retries":3,
        "methodTimeout": 4
    }
]
`;

/** The original README, lines 691–703. */
const SEED_TO_NODES = `
[
    {
        "directory": "httpget",
        "fileName": "finn.no.html",
        "toNodes": ["central","ship2"],
        "methodArgs": ["https://finn.no"],
        "method":"REQHttpGet",
        "replyMethod":"REQToFile",
        "ACKTimeout":5,
        "retries":3,
        "methodTimeout": 5
    }
]
`;

/** The original README, lines 705–721. */
const SEED_OP_COMMAND_PS = `
[
    {
        "directory":"opcommand_logs",
        "fileName": "some.log",
        "toNode": "ship2",
        "data": [],
        "method":"REQOpCommand",
        "operation":{
            "opCmd":"ps"
        },
        "ACKTimeout":3,
        "retries":3,
        "replyACKTimeout":3,
        "replyRetries":3,
        "methodTimeout": 7
    }
]
`;

/** The original README, lines 723–744. */
const SEED_OP_COMMAND_STOP = `
[
    {
        "directory":"opcommand_logs",
        "fileName": "some.log",
        "toNode": "ship2",
        "data": [],
        "method":"REQOpCommand",
        "operation":{
            "opCmd":"stopProc",
            "opArg": {
                "method": "REQHttpGet",
                "kind": "subscriber",
                "receivingNode": "ship2"
            }
        },
        "ACKTimeout":3,
        "retries":3,
        "replyACKTimeout":3,
        "replyRetries":3,
        "methodTimeout": 7
    }
]
`;

/** The original README, lines 746–766. */
const SEED_OP_COMMAND_START = `
[
    {
        "directory":"opcommand_logs",
        "fileName": "some.log",
        "toNode": "ship2",
        "data": [],
        "method":"REQOpCommand",
        "operation":{
            "opCmd":"startProc",
            "opArg": {
                "method": "REQHttpGet",
                "allowedNodes": ["central","node1"]
            }
        },
        "ACKTimeout":3,
        "retries":3,
        "replyACKTimeout":3,
        "replyRetries":3,
        "methodTimeout": 7
    }
]
`;

/** The original README, lines 768–779. */
const SEED_TAIL_FILE_2 = `
[
    {
        "directory": "./my/log/files/",
        "fileName": "some.log",
        "toNode": "ship2",
        "methodArgs": ["./test.log"],
        "method":"REQTailFile",
        "ACKTimeout":5,
        "retries":3,
        "methodTimeout": 200
    }
]
`;

// ---- Fixtures ------------------------------------------------------------------------------

/** The objects of a seed array, as text, to build batches from verbatim pieces. */
function inner(seed: string): string {
  const t = seed.trim();
  assert.ok(t.startsWith("[") && t.endsWith("]"), "a seed example is an array");
  return t.slice(1, -1).trim();
}

/** What `bash -c <script>` exits with on this machine (tree and docker may be missing or broken). */
function exitStatusHere(script: string): number | null {
  return spawnSync("bash", ["-c", `${script} > /dev/null 2>&1`]).status;
}
const TREE_EXIT = exitStatusHere("tree ./");
const DOCKER_EXIT = exitStatusHere("docker ps -a");

// Seeds write results under absolute folders in /var; remove what this suite created.
const SEED_ABS_ROOTS = ["/var/cli", "/var/steward", "/my", "/some"];
const preexisting = new Set(SEED_ABS_ROOTS.filter((p) => existsSync(p)));

let fleet: Fleet;
before(async () => {
  // Short default ACK wait and retries, so that a seed without ACKTimeout that is never ACKed fails fast.
  fleet = await Fleet.start("seeds", ["central", "ship1", "ship2"], {
    defaultMessageTimeout: 2,
    defaultMessageRetries: 1,
  });
  // The seeds' fleet let every node call every node (one example sends from ship2 to ship1): so do the rules here.
  await fleet.allowAll();
});
after(async () => {
  await fleet.close();
  for (const p of SEED_ABS_ROOTS) if (!preexisting.has(p)) rmSync(p, { recursive: true, force: true });
});

const data = (node: string) => fleet.node(node).dataFolder;

function accepted(answers: AcceptAnswer[], expect: { toNode: string; method: string }[]): string[] {
  assert.equal(answers.length, expect.length, JSON.stringify(answers));
  return answers.map((a, i) => {
    assert.ok(a.ok, `message ${i} accepted: ${JSON.stringify(a)}`);
    assert.equal(a.toNode, expect[i]?.toNode);
    assert.equal(a.method, expect[i]?.method);
    return a.id;
  });
}

function refusedForMethod(a: AcceptAnswer | undefined, index: number, method: string): void {
  assert.ok(a && !a.ok, `message ${index} refused: ${JSON.stringify(a)}`);
  assert.equal(a.index, index, a.error);
  assert.match(a.error, new RegExp(`message ${index}\\b`));
  assert.match(a.error, /field "method"/);
  assert.ok(a.error.includes(`"${method}"`), `the error names ${method}: ${a.error}`);
}

/** The outcome of a `bash -c "sleep N & tree ./"` seed, as this machine runs it. */
function assertTreeOutcome(m: MessageView): void {
  assert.equal(m.state, "done", JSON.stringify(m));
  assert.equal(m.exitCode, TREE_EXIT, JSON.stringify(m));
  if (TREE_EXIT === 0) assert.ok((m.result?.data ?? "").length > 0, "tree lists the folder");
  else assert.match(m.result?.stderr ?? "", /tree/, "stderr says what went wrong");
}

// ---- Tests ---------------------------------------------------------------------------------

describe("seed messages this version runs", () => {
  test("the first example (REQCliCommand, REQToFileAppend, absolute directory) from central to ship1", async () => {
    const result = "/var/cli/command_result/ship1/some-file-name.result";
    rmSync(result, { force: true });
    const [id] = accepted(await fleet.send("central", SEED_INTRO_CLI), [{ toNode: "ship1", method: "cliCommand" }]);
    const m = await fleet.waitState("central", id as string, undefined, 25_000);
    assertTreeOutcome(m);
    assert.ok(existsSync(result), `${result} written on central`);
  });

  test("'Sending a command from one Node to Another Node' from ship2 to ship1 (default reply method)", async () => {
    const result = "/var/steward/cli-command/executed-result/ship1/some.log";
    rmSync(result, { force: true });
    const [id] = accepted(await fleet.send("ship2", SEED_NODE_TO_NODE), [{ toNode: "ship1", method: "cliCommand" }]);
    const m = await fleet.waitState("ship2", id as string, undefined, 25_000);
    assertTreeOutcome(m);
    assert.ok(existsSync(result), `${result} written on ship2 (default replyMethod fileAppend)`);
  });

  test("'Specify more messages at once': both accepted, both run, one result file per node", async () => {
    const ids = accepted(await fleet.send("central", SEED_MULTI), [
      { toNode: "ship1", method: "cliCommand" },
      { toNode: "ship2", method: "cliCommand" },
    ]);
    assert.notEqual(ids[0], ids[1]);
    const ms = await Promise.all(ids.map((id) => fleet.waitState("central", id, undefined, 25_000)));
    for (const m of ms) assertTreeOutcome(m);
    for (const node of ["ship1", "ship2"]) {
      assert.ok(
        existsSync(join(data("central"), "cli-command-executed-result", node, "some.log")),
        `result of ${node}`,
      );
    }
  });

  test("REQnCliCommand (docker ps -a) to ship2 reaches a final state with its result file", async () => {
    const result = join(data("central"), "some", "cli", "command", "ship2", "cli.result");
    const [id] = accepted(await fleet.send("central", SEED_N_CLI_COMMAND), [{ toNode: "ship2", method: "cliCommand" }]);
    const m = await fleet.waitState("central", id as string);
    // What docker does here decides the outcome; either way the user is told.
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.exitCode, DOCKER_EXIT, JSON.stringify(m));
    if (DOCKER_EXIT !== 0) assert.ok((m.result?.stderr ?? "").length > 0, "stderr says why docker failed");
    await waitFile(result);
  });

  test("REQHello (toNode central) from ship1 is accepted and not reported as undeliverable", async () => {
    const [id] = accepted(await fleet.send("ship1", SEED_HELLO), [{ toNode: "central", method: "hello" }]);
    let m: MessageView | undefined;
    // Central got it (it hears ship1's hellos): the message must not end as "max retries reached".
    await sleepUntil(
      async () => {
        m = await fleet.status("ship1", id as string);
        return ["acked", "running", "done", "failed"].includes(m.state);
      },
      { what: () => `the hello to be acked or settled (last: ${JSON.stringify(m)})` },
    );
    assert.notEqual(m?.state, "failed", JSON.stringify(m));
  });
});

describe("seed reply methods (REQToFileAppend, REQToFile, REQToConsole) with a method of this version", () => {
  // These seeds use REQOpProcessList (run verbatim below). Here the same text also runs
  // with only "method" and "methodArgs" swapped for a command, to exercise the reply methods.
  const withCommand = (seed: string, word: string) =>
    seed
      .replace(`"method":"REQOpProcessList"`, `"method":"REQCliCommand"`)
      .replace(`"methodArgs": []`, `"methodArgs": ["echo","${word}"]`);
  const path = () => join(data("central"), "test", "dir", "ship2", "test.result");

  test("REQToFileAppend appends, then REQToFile replaces, <centralData>/test/dir/ship2/test.result", async () => {
    rmSync(path(), { force: true });
    const words = [marker("append-a"), marker("append-b"), marker("replace")];
    for (const [i, seed] of [SEED_TO_FILE_APPEND, SEED_TO_FILE_APPEND, SEED_TO_FILE].entries()) {
      const text = withCommand(seed, words[i] as string);
      assert.notEqual(text, seed, "the swap applied");
      const [id] = accepted(await fleet.send("central", text), [{ toNode: "ship2", method: "cliCommand" }]);
      assert.equal((await fleet.waitState("central", id as string)).state, "done");
      if (i === 1) assert.equal(readIfExists(path()), `${words[0]}\n${words[1]}\n`);
    }
    assert.equal(readIfExists(path()), `${words[2]}\n`);
  });

  test("REQToConsole prints the result on central's stdout", async () => {
    const word = marker("console");
    const [id] = accepted(await fleet.send("central", withCommand(SEED_TO_CONSOLE, word)), [
      { toNode: "ship2", method: "cliCommand" },
    ]);
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
    await sleepUntil(() => fleet.node("central").stdout.includes(`${word}\n`), {
      what: `"${word}" on central's stdout`,
    });
  });
});

describe("seed messages of the streaming and web methods are accepted and reach a final state", () => {
  // This machine has no network and no /var/log/syslog: each ends with the reason, where the seed says.
  const SEEDS: [string, string, { toNode: string; method: string }[], RegExp][] = [
    ["REQCliCommandCont (docker ps -a)", SEED_N_CLI_COMMAND_CONT, [{ toNode: "ship2", method: "cliCommandCont" }], /./],
    [
      "REQTailFile (/var/log/system.log)",
      SEED_TAIL_FILE,
      [{ toNode: "ship2", method: "tailFile" }],
      /cannot follow \/var\/log\/system\.log/,
    ],
    [
      "tail a log file (./test.log)",
      SEED_TAIL_FILE_2,
      [{ toNode: "ship2", method: "tailFile" }],
      /cannot follow .*test\.log/,
    ],
    [
      "REQHttpGet (no network here)",
      SEED_HTTP_GET,
      [{ toNode: "ship2", method: "httpGet" }],
      /GET https:\/\/web\.ics\.purdue\.edu/,
    ],
    [
      "toNodes REQHttpGet (no network here)",
      SEED_TO_NODES,
      [
        { toNode: "central", method: "httpGet" },
        { toNode: "ship2", method: "httpGet" },
      ],
      /GET https:\/\/finn\.no/,
    ],
  ];
  for (const [name, seed, expect, reason] of SEEDS) {
    test(name, async () => {
      const ids = accepted(await fleet.send("central", seed), expect);
      for (const id of ids) {
        const m = await fleet.waitState("central", id, undefined, 25_000);
        if (m.state === "failed") assert.match(m.reason ?? "", reason, JSON.stringify(m));
        else assert.equal(m.state, "done", JSON.stringify(m));
      }
    });
  }

  test("the timeouts example (REQnCliCommandCont, tail -f /var/log/syslog) is accepted and runs", async () => {
    const [id] = accepted(await fleet.send("central", SEED_TIMEOUTS_CONT), [
      { toNode: "ship2", method: "cliCommandCont" },
    ]);
    // tail exits at once where the file is missing; where it exists, the seed follows it for 60 s.
    const m = await fleet.waitState(
      "central",
      id as string,
      existsSync("/var/log/syslog") ? "running" : undefined,
      25_000,
    );
    assert.ok(["running", "done"].includes(m.state), JSON.stringify(m));
  });
});

describe("the op-method seeds (REQOpProcess*, REQOpCommand, and the reply-method examples built on them) run unchanged", () => {
  // Order matters: the httpGet subscriber of ship2 is stopped, then started again.
  const OPS: [string, string, string][] = [
    ["REQOpProcessList", SEED_OP_PROCESS_LIST, "opProcessList"],
    ["REQOpProcessStop", SEED_OP_PROCESS_STOP, "opProcessStop"],
    ["REQOpProcessStart", SEED_OP_PROCESS_START, "opProcessStart"],
    ["REQOpCommand stopProc", SEED_OP_COMMAND_STOP, "opProcessStop"],
    ["REQOpCommand startProc", SEED_OP_COMMAND_START, "opProcessStart"],
    ["REQOpCommand ps", SEED_OP_COMMAND_PS, "opProcessList"],
    ["REQToFileAppend", SEED_TO_FILE_APPEND, "opProcessList"],
    ["REQToFile", SEED_TO_FILE, "opProcessList"],
  ];
  for (const [name, seed, method] of OPS) {
    test(`${name} (${method})`, async () => {
      const [id] = accepted(await fleet.send("central", seed), [{ toNode: "ship2", method }]);
      const m = await fleet.waitState("central", id as string);
      assert.equal(m.state, "done", JSON.stringify(m));
    });
  }

  test("their results land where the seeds say", async () => {
    const testResult = readIfExists(join(data("central"), "test", "dir", "ship2", "test.result")) ?? "";
    // REQToFile ran last: the file holds one process list, replaced.
    assert.match(testResult, /^ship2 subscriber cliCommand allowedNodes=\*/m);
    assert.equal(testResult.match(/subscriber cliCommand /g)?.length, 1, testResult);
    const opLog = readIfExists(join(data("central"), "opcommand_logs", "ship2", "some.log")) ?? "";
    assert.match(opLog, /subscriber httpGet stopped/);
    assert.match(opLog, /subscriber httpGet started, allowedNodes=central,node1/);
    assert.match(opLog, /subscriber httpGet allowedNodes=central,node1/);
  });

  test("REQToConsole prints ship2's process list on central's stdout", async () => {
    const [id] = accepted(await fleet.send("central", SEED_TO_CONSOLE), [{ toNode: "ship2", method: "opProcessList" }]);
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
    await sleepUntil(() => fleet.node("central").stdout.includes("ship2 subscriber opProcessList"), {
      what: "the list on central's stdout",
    });
  });

  test("in a batch, a bad message is refused by its index and the seeds beside it run", async () => {
    const bad = `{"toNode": "ship2", "method": "REQNoSuchMethod"}`;
    const batch = `[${[inner(SEED_N_CLI_COMMAND), bad, inner(SEED_OP_PROCESS_LIST)].join(",")}]`;
    const answers = await fleet.send("central", batch);
    assert.equal(answers.length, 3, JSON.stringify(answers));
    refusedForMethod(answers[1], 1, "REQNoSuchMethod");
    const ids = accepted([answers[0], answers[2]] as AcceptAnswer[], [
      { toNode: "ship2", method: "cliCommand" },
      { toNode: "ship2", method: "opProcessList" },
    ]);
    const cli = await fleet.waitState("central", ids[0] as string);
    assert.equal(cli.state, "done", JSON.stringify(cli));
    assert.equal(cli.exitCode, DOCKER_EXIT);
    assert.equal((await fleet.waitState("central", ids[1] as string)).state, "done");
  });
});
