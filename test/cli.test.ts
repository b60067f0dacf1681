/**
 * The `steward` executable against a real fleet: `send` (with
 * --wait, from a FILE and from stdin), `status`, `status ID`, `nodes`, run
 * both with --socket-folder and from the node's own folder with no flags;
 * and what it says when the node is not there or the command line is wrong.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { listNodes } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { type CliResult, cleanEnv, runCli, uniqueId } from "./helpers/cli-helpers.js";

let fleet: Fleet;
let centralDir: string;
let socketFolder: string;

before(async () => {
  fleet = await Fleet.start("cli", ["central", "ship1", "ship2"]);
  centralDir = fleet.node("central").opts.dir;
  socketFolder = join(centralDir, "tmp");
});
after(() => fleet.close());

/** Run steward from a neutral folder, pointing at central's socket. */
function steward(
  args: string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return runCli(args, {
    cwd: opts.cwd ?? fleet.dir,
    ...(opts.env && { env: opts.env }),
    ...(opts.input !== undefined && { input: opts.input }),
  });
}

const show = (r: CliResult) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** The ids of the "accepted <id> <node> <method>" lines. */
function acceptedIds(stdout: string): string[] {
  return [...stdout.matchAll(/^accepted (\S+) (\S+) (\S+)/gm)].map((m) => m[1] as string);
}

/** The --wait output cut into one block per node: "== ship1 (id): done (exit 0)" and what follows. */
function resultBlocks(stdout: string): Map<string, { head: string; body: string }> {
  const blocks = new Map<string, { head: string; body: string }>();
  for (const part of stdout.split(/^== /m).slice(1)) {
    const [head = "", ...body] = part.split("\n");
    const node = head.split(" ")[0] as string;
    blocks.set(node, { head, body: body.join("\n") });
  }
  return blocks;
}

describe("steward send", () => {
  test("--to ship1 --to ship2 --wait -- echo hello: exit 0, each node's result printed", async () => {
    const r = await steward([
      "send",
      "--to",
      "ship1",
      "--to",
      "ship2",
      "--wait",
      "--socket-folder",
      socketFolder,
      "--",
      "echo",
      "hello",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(acceptedIds(r.stdout).length, 2, show(r));
    const blocks = resultBlocks(r.stdout);
    assert.deepEqual([...blocks.keys()].sort(), ["ship1", "ship2"], show(r));
    for (const [node, b] of blocks) {
      assert.match(b.head, /done \(exit 0\)/, `${node}: ${b.head}`);
      assert.equal(b.body.trim(), "hello", `${node}'s output`);
    }
  });

  test("the command's own flags after -- are passed through untouched", async () => {
    const r = await steward([
      "send",
      "--to",
      "ship1",
      "--wait",
      "--socket-folder",
      socketFolder,
      "--",
      "bash",
      "-c",
      "echo $0 $1",
      "--to",
      "--wait",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(resultBlocks(r.stdout).get("ship1")?.body.trim(), "--to --wait");
  });

  test("a command that exits non-zero makes --wait exit non-zero, with its exit status and stderr shown", async () => {
    const r = await steward([
      "send",
      "--to",
      "ship1",
      "--wait",
      "--socket-folder",
      socketFolder,
      "--",
      "bash",
      "-c",
      "echo partial; echo oops >&2; exit 3",
    ]);
    assert.notEqual(r.code, 0, show(r));
    const b = resultBlocks(r.stdout).get("ship1");
    assert.ok(b, show(r));
    assert.match(b.head, /exit 3/);
    assert.match(b.body, /partial/);
    assert.match(b.body, /oops/);
  });

  test("one failing node among two makes --wait exit non-zero; the other's result is still printed", async () => {
    const r = await steward([
      "send",
      "--to",
      "ship1",
      "--to",
      "ship2",
      "--wait",
      "--socket-folder",
      socketFolder,
      "--",
      "bash",
      "-c",
      '[ "$STEWARD_NODE_NAME" = ship2 ] && exit 1; echo fine',
    ]);
    assert.notEqual(r.code, 0, show(r));
    const blocks = resultBlocks(r.stdout);
    assert.equal(blocks.size, 2, show(r));
  });

  test("without --wait: prints the accepted ids and exits 0; the messages run", async () => {
    const r = await steward(["send", "--to", "ship2", "--socket-folder", socketFolder, "--", "echo", "nowait"]);
    assert.equal(r.code, 0, show(r));
    const [id] = acceptedIds(r.stdout);
    assert.ok(id, show(r));
    assert.match(r.stdout, new RegExp(`^accepted ${id} ship2 cliCommand$`, "m"));
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "done");
    assert.equal(m.result?.data, "nowait\n");
  });

  test("--id makes a submission idempotent", async () => {
    const id = uniqueId("cli-id");
    const first = await steward(["send", "--to", "ship1", "--id", id, "--socket-folder", socketFolder, "--", "true"]);
    assert.equal(first.code, 0, show(first));
    assert.match(first.stdout, new RegExp(`^accepted ${id} ship1 cliCommand$`, "m"));
    const again = await steward(["send", "--to", "ship1", "--id", id, "--socket-folder", socketFolder, "--", "true"]);
    assert.match(again.stdout, /already accepted/, show(again));
  });

  test("FILE: a JSON file of messages", async () => {
    const a = uniqueId("file-a");
    const b = uniqueId("file-b");
    const file = join(fleet.dir, `${a}.json`);
    writeFileSync(
      file,
      JSON.stringify([
        { id: a, toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "from-file"] },
        { id: b, toNode: "ship2", method: "REQCliCommand", methodArgs: ["echo", "also"] },
      ]),
    );
    const r = await steward(["send", file, "--socket-folder", socketFolder]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(acceptedIds(r.stdout), [a, b]);
    assert.equal((await fleet.waitState("central", a)).result?.data, "from-file\n");
    assert.equal((await fleet.waitState("central", b)).result?.data, "also\n");
  });

  test("FILE --wait prints the results", async () => {
    const id = uniqueId("file-wait");
    const file = join(fleet.dir, `${id}.yaml`);
    writeFileSync(file, `id: ${id}\ntoNode: ship2\nmethod: cliCommand\nmethodArgs: [echo, yaml-wait]\n`);
    const r = await steward(["send", "--wait", "--socket-folder", socketFolder, file]);
    assert.equal(r.code, 0, show(r));
    assert.equal(resultBlocks(r.stdout).get("ship2")?.body.trim(), "yaml-wait");
  });

  test('"-" reads the messages from stdin', async () => {
    const id = uniqueId("stdin");
    const r = await steward(["send", "-", "--socket-folder", socketFolder], {
      input: JSON.stringify({ id, toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "piped"] }),
    });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(acceptedIds(r.stdout), [id]);
    assert.equal((await fleet.waitState("central", id)).result?.data, "piped\n");
  });

  test("a file with a refused message: the error on stderr, exit non-zero, the valid one still accepted", async () => {
    const good = uniqueId("good");
    const file = join(fleet.dir, `${good}-mixed.json`);
    writeFileSync(
      file,
      JSON.stringify([
        { id: good, toNode: "ship1", method: "cliCommand", methodArgs: ["true"] },
        { toNode: "ship1", method: "explode" },
      ]),
    );
    const r = await steward(["send", file, "--socket-folder", socketFolder]);
    assert.notEqual(r.code, 0, show(r));
    assert.deepEqual(acceptedIds(r.stdout), [good]);
    assert.match(r.stderr, /error message 1\b.*"method"/);
    assert.equal((await fleet.waitState("central", good)).state, "done");
  });

  test("a missing FILE: non-zero exit, a message that names it, no stack trace", async () => {
    const r = await steward(["send", join(fleet.dir, "no-such-file.json"), "--socket-folder", socketFolder]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no-such-file\.json/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `a message, not a stack trace:\n${r.stderr}`);
  });

  test("a command without --to: exit 2 saying to name the node", async () => {
    const r = await steward(["send", "--socket-folder", socketFolder, "--", "echo", "x"]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--to/);
  });

  test("a bad node name in --to is refused by the node, exit non-zero", async () => {
    const r = await steward(["send", "--to", "ship.1", "--socket-folder", socketFolder, "--", "true"]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /dot/);
  });
});

describe("steward status and nodes", () => {
  test("status lists the messages sent, with their ids and states", async () => {
    const ids = await fleet.sendOk("central", [
      { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "s1"] },
      { toNode: "ship2", method: "cliCommand", methodArgs: ["echo", "s2"] },
    ]);
    for (const id of ids) await fleet.waitState("central", id);
    const r = await steward(["status", "--socket-folder", socketFolder]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^ID\s+TO\s+METHOD/m);
    for (const id of ids) {
      const line = r.stdout.split("\n").find((l) => l.startsWith(id));
      assert.ok(line, `${id} is listed:\n${r.stdout}`);
      assert.match(line, /cliCommand/);
      assert.match(line, /done \(exit 0\)/);
    }
  });

  test("status --json gives the same as JSON", async () => {
    const [id] = await fleet.sendOk("central", { toNode: "ship1", method: "ping" });
    await fleet.waitState("central", id as string);
    const r = await steward(["status", "--json", "--socket-folder", socketFolder]);
    assert.equal(r.code, 0, show(r));
    const list = JSON.parse(r.stdout) as { id: string; state: string }[];
    assert.ok(list.some((m) => m.id === id && m.state === "done"));
  });

  test("status ID shows the state and the result", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["bash", "-c", "echo line-one; echo line-two"],
    });
    await fleet.waitState("central", id as string);
    const r = await steward(["status", id as string, "--socket-folder", socketFolder]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^id:\\s+${id}$`, "m"));
    assert.match(r.stdout, /^to:\s+ship2$/m);
    assert.match(r.stdout, /^state:\s+done \(exit 0\)$/m);
    assert.match(r.stdout, /line-one\nline-two/);
  });

  test("status of an unknown id: non-zero exit naming the id", async () => {
    const r = await steward(["status", "NO-SUCH-ID", "--socket-folder", socketFolder]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NO-SUCH-ID/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `a message, not a stack trace:\n${r.stderr}`);
  });

  test("nodes lists ship1 and ship2 once their hellos arrived", async () => {
    const socket = fleet.node("central").socketPath;
    await sleepUntil(
      async () => {
        const names = (await listNodes(socket)).nodes.map((n) => n.name);
        return names.includes("ship1") && names.includes("ship2");
      },
      { what: "central to know ship1 and ship2" },
    );
    const r = await steward(["nodes", "--socket-folder", socketFolder]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^NODE\s+LAST SEEN/m);
    for (const name of ["ship1", "ship2"]) {
      const line = r.stdout.split("\n").find((l) => l.startsWith(`${name} `));
      assert.ok(line, `${name} listed:\n${r.stdout}`);
      assert.doesNotMatch(line, /never/, `${name} has been seen`);
    }
  });
});

describe("from the node's own folder, no flags", () => {
  test("send and status with cwd = the node folder and nothing else", async () => {
    const env = cleanEnv();
    const r = await steward(["send", "--to", "ship1", "--wait", "--", "echo", "home"], { cwd: centralDir, env });
    assert.equal(r.code, 0, show(r));
    const [id] = acceptedIds(r.stdout);
    assert.ok(id);
    const s = await steward(["status", id], { cwd: centralDir, env });
    assert.equal(s.code, 0, show(s));
    assert.match(s.stdout, /state:\s+done/);
  });

  test("--config-folder etc", async () => {
    const r = await steward(
      ["send", "--config-folder", "etc", "--to", "ship2", "--wait", "--", "echo", "via-config-folder"],
      {
        cwd: centralDir,
      },
    );
    assert.equal(r.code, 0, show(r));
    assert.equal(resultBlocks(r.stdout).get("ship2")?.body.trim(), "via-config-folder");
    const s = await steward(["status", "--config-folder", "etc"], { cwd: centralDir });
    assert.equal(s.code, 0, show(s));
    assert.ok(s.stdout.includes(acceptedIds(r.stdout)[0] as string));
  });

  test("env CONFIG_FOLDER=etc", async () => {
    const env = cleanEnv({ CONFIG_FOLDER: "etc" });
    const r = await steward(["send", "--to", "ship1", "--wait", "--", "echo", "via-env"], { cwd: centralDir, env });
    assert.equal(r.code, 0, show(r));
    const n = await steward(["nodes"], { cwd: centralDir, env });
    assert.equal(n.code, 0, show(n));
    assert.match(n.stdout, /ship1/);
  });

  test("env SOCKET_FOLDER from anywhere", async () => {
    const r = await steward(["status"], { cwd: fleet.dir, env: cleanEnv({ SOCKET_FOLDER: socketFolder }) });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^ID\s+TO/m);
  });

  test("the CLI does not create or change the node's config.json", async () => {
    const file = join(centralDir, "etc", "config.json");
    const before = readFileSync(file, "utf8");
    const r = await steward(["status", "--config-folder", "etc", "--node-name", "someone-else"], { cwd: centralDir });
    assert.equal(r.code, 0, show(r));
    assert.equal(readFileSync(file, "utf8"), before);
  });
});

describe("when the node is not there, or the command line is wrong", () => {
  const empty = mkdtempSync(join(tmpdir(), "steward-test-cli-empty-"));
  after(() => rmSync(empty, { recursive: true, force: true }));

  for (const args of [["send", "--to", "ship1", "--", "true"], ["status"], ["status", "SOME-ID"], ["nodes"]]) {
    test(`${args.join(" ")} with a wrong --socket-folder: non-zero exit, says to start the node`, async () => {
      const r = await steward([...args, "--socket-folder", join(empty, "nowhere")]);
      assert.notEqual(r.code, 0, show(r));
      assert.match(r.stderr, /steward start/);
      assert.match(r.stderr, /--socket-folder|--config-folder/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `a message, not a stack trace:\n${r.stderr}`);
    });
  }

  test("an empty folder (no config, no socket) with no flags: same message", async () => {
    const r = await steward(["status"], { cwd: empty, env: cleanEnv() });
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /steward start/);
  });

  test("steward --help: exit 0, lists the commands", async () => {
    const r = await steward(["--help"]);
    assert.equal(r.code, 0, show(r));
    for (const cmd of ["start", "send", "status", "nodes", "demo"])
      assert.match(r.stdout, new RegExp(`^\\s+${cmd}\\b`, "m"));
  });

  test("steward send --help: exit 0, shows its options", async () => {
    const r = await steward(["send", "--help"]);
    assert.equal(r.code, 0, show(r));
    for (const opt of ["--to", "--method", "--wait", "--timeout", "--socket-folder"])
      assert.ok(r.stdout.includes(opt), `${opt} in send --help`);
  });

  test("steward status --help and nodes --help: exit 0", async () => {
    for (const cmd of ["status", "nodes"]) {
      const r = await steward([cmd, "--help"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`steward ${cmd}`));
    }
  });

  test("an unknown command: exit 2 with a usage hint", async () => {
    const r = await steward(["frobnicate"]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /frobnicate/);
    assert.match(r.stderr, /steward --help/);
  });

  test("send with neither FILE nor --to: exit 2 with a usage hint", async () => {
    const r = await steward(["send", "--socket-folder", socketFolder]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /steward send --help|steward --help/);
  });

  test("an unknown option to status: exit 2", async () => {
    const r = await steward(["status", "a", "b", "--socket-folder", socketFolder]);
    assert.equal(r.code, 2, show(r));
  });

  test("--timeout that is not a number: exit 2", async () => {
    const r = await steward([
      "send",
      "--to",
      "ship1",
      "--wait",
      "--timeout",
      "soon",
      "--socket-folder",
      socketFolder,
      "--",
      "true",
    ]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--timeout/);
  });
});
