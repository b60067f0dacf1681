/**
 * `steward status` filters (--to, --state, --method, --since, --limit) and --watch, run as the built
 * executable against real nodes: messages from central to ship1, ship2 and a node that is not there,
 * with different methods and outcomes; each filter must list exactly the messages it names.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { dirname } from "node:path";
import { after, before, describe, test } from "node:test";
import { query } from "../src/client/client.js";
import { NodeQueryError } from "../src/errors.js";
import { Fleet, sleepUntil, STEWARD_BIN } from "../src/harness/fleet.js";
import type { MessageView } from "../src/inputs/queries.js";
import { type CliResult, cleanEnv, runCli } from "./helpers/cli-helpers.js";

let fleet: Fleet;
let socketFolder: string;
/** The messages every test below looks at, by what they are. */
const ids = { echo1: "", fails2: "", ping2: "", ghost: "" };

const cmd = (toNode: string, methodArgs: string[], extra: Record<string, unknown> = {}) => ({
  toNode,
  method: "cliCommand",
  methodArgs,
  ...extra,
});

before(async () => {
  fleet = await Fleet.start("statusFilters", ["central", "ship1", "ship2"]);
  socketFolder = dirname(fleet.node("central").socketPath);
  const sent = await fleet.sendOk("central", [
    cmd("ship1", ["echo", "one"]),
    cmd("ship2", ["/nonexistent/steward-test-command"]),
    { toNode: "ship2", method: "ping" },
    // Nobody answers for ghost: it stays sent, re-sent every 2 s.
    cmd("ghost", ["true"], { ACKTimeout: 2, retries: 1000 }),
  ]);
  [ids.echo1, ids.fails2, ids.ping2, ids.ghost] = sent as [string, string, string, string];
  assert.equal((await fleet.waitState("central", ids.echo1)).state, "done");
  assert.equal((await fleet.waitState("central", ids.fails2)).state, "failed");
  assert.equal((await fleet.waitState("central", ids.ping2)).state, "done");
  await fleet.waitState("central", ids.ghost, "sent");
});
after(() => fleet.close());

function steward(args: string[]): Promise<CliResult> {
  return runCli(["status", ...args, "--socket-folder", socketFolder], { cwd: fleet.dir });
}

const show = (r: CliResult) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** The ids `steward status --json ARGS` lists. */
async function listed(...args: string[]): Promise<string[]> {
  const r = await steward([...args, "--json"]);
  assert.equal(r.code, 0, show(r));
  return (JSON.parse(r.stdout) as MessageView[]).map((m) => m.id);
}

const sorted = (list: string[]) => [...list].sort();

describe("filters", () => {
  test("--to, --method and --state each narrow to exactly the messages they name, and combine", async () => {
    assert.deepEqual(sorted(await listed("--to", "ship1")), [ids.echo1]);
    assert.deepEqual(
      sorted(await listed("--to", "ship1", "--to", "ship2")),
      sorted([ids.echo1, ids.fails2, ids.ping2]),
    );
    assert.deepEqual(sorted(await listed("--to", "ship2,ghost")), sorted([ids.fails2, ids.ping2, ids.ghost]));
    assert.deepEqual(sorted(await listed("--method", "ping")), [ids.ping2]);
    assert.deepEqual(
      sorted(await listed("--method", "cliCommand")),
      sorted([ids.echo1, ids.fails2, ids.ghost]),
      "hellos and pings are other methods",
    );
    assert.deepEqual(sorted(await listed("--state", "failed")), [ids.fails2]);
    assert.deepEqual(sorted(await listed("--state", "queued,sent")), [ids.ghost]);
    assert.deepEqual(sorted(await listed("--state", "queued", "--state", "sent")), [ids.ghost]);
    assert.deepEqual(sorted(await listed("--to", "ship2", "--state", "done")), [ids.ping2]);
    assert.deepEqual(sorted(await listed("--to", "ship2", "--method", "cliCommand", "--state", "done")), []);
  });

  test("the table: the matching rows, newest first; a last line when more match than --limit", async () => {
    const all = await steward(["--to", "ship1,ship2"]);
    assert.equal(all.code, 0, show(all));
    const rows = all.stdout.trim().split("\n").slice(1);
    assert.deepEqual(
      rows.map((r) => r.split(/\s+/)[0]),
      [ids.ping2, ids.fails2, ids.echo1],
      show(all),
    );
    assert.doesNotMatch(all.stdout, /more match/);
    const cut = await steward(["--to", "ship1,ship2", "--limit", "2"]);
    assert.equal(cut.code, 0, show(cut));
    const lines = cut.stdout.trim().split("\n");
    assert.equal(lines.length, 4, show(cut));
    assert.match(lines[3] ?? "", /^\(more match than these 2: --limit N shows more/);
    const none = await steward(["--to", "ship1", "--state", "expired"]);
    assert.equal(none.stdout, "no messages match\n", show(none));
  });

  test("--since: messages that changed since then (an ISO time or a duration), older settled ones left out", async () => {
    await sleepUntil(async () => (await fleet.status("central", ids.echo1)).updatedAt < new Date().toISOString());
    const since = new Date().toISOString();
    const [later] = await fleet.sendOk("central", cmd("ship1", ["echo", "later"]));
    assert.equal((await fleet.waitState("central", later as string)).state, "done");
    assert.deepEqual(await listed("--to", "ship1", "--since", since), [later]);
    assert.deepEqual(sorted(await listed("--to", "ship1", "--since", "1h")), sorted([ids.echo1, later as string]));
    assert.deepEqual(await listed("--since", new Date(Date.now() + 3_600_000).toISOString()), []);
    // The message to ghost is re-sent every 2 s: each attempt is a change, so it shows up again.
    const { attempt } = await fleet.status("central", ids.ghost);
    await sleepUntil(async () => (await fleet.status("central", ids.ghost)).attempt > attempt, {
      what: "another attempt to ghost",
    });
    assert.deepEqual(await listed("--to", "ghost", "--since", since), [ids.ghost]);
  });

  test("a wrong state, WHEN or --limit: exit 2, saying what is valid; the node refuses a wrong filter too", async () => {
    const state = await steward(["--state", "done,finished"]);
    assert.equal(state.code, 2, show(state));
    assert.match(
      state.stderr,
      /--state: unknown state "finished"; the states are pending, queued, sent, acked, waiting, running, done, failed, expired, cancelled/,
    );
    const when = await steward(["--since", "2weeks"]);
    assert.equal(when.code, 2, show(when));
    assert.match(when.stderr, /--since: "2weeks" is neither a duration back from now \(90s, 30m, 12h, 3d/);
    const limit = await steward(["--limit", "0"]);
    assert.equal(limit.code, 2, show(limit));
    const withId = await steward([ids.echo1, "--to", "ship1"]);
    assert.equal(withId.code, 2, show(withId));
    await assert.rejects(
      query(fleet.node("central").socketPath, "list", { limit: 5, filter: { states: ["finished" as never] } }),
      (err: Error) =>
        err instanceof NodeQueryError && /unknown state "finished"; the states are pending, queued/.test(err.message),
    );
  });
});

/** `steward status --watch ARGS` as a child process, its output read as it comes. */
class Watch {
  readonly child: ChildProcessWithoutNullStreams;
  stdout = "";
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [STEWARD_BIN, "status", "--watch", ...args, "--socket-folder", socketFolder], {
      cwd: fleet.dir,
      env: cleanEnv(),
    });
    this.child.stdout.setEncoding("utf8").on("data", (d: string) => (this.stdout += d));
    this.child.stderr.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
    return sleepUntil(cond, {
      timeoutMs,
      what: () => `${what}\n--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`,
    });
  }

  /** Ctrl-C; the exit it makes. */
  async interrupt(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill("SIGINT");
    return this.exited;
  }
}

describe("--watch", () => {
  test("prints the matching messages, then a line per change up to done; Ctrl-C exits 0", async () => {
    const watch = new Watch(["--to", "ship1"]);
    try {
      await watch.until("the watch to start", () => watch.stderr.includes("watching for changes"));
      assert.match(watch.stdout, new RegExp(`^${ids.echo1} +ship1 +cliCommand .*done \\(exit 0\\)$`, "m"));
      assert.doesNotMatch(watch.stdout, new RegExp(ids.ping2), "ship2's messages are filtered out");
      const [id] = await fleet.sendOk("central", [cmd("ship1", ["echo", "watched"]), cmd("ship2", ["echo", "not"])]);
      const done = new RegExp(`^\\d\\d:\\d\\d:\\d\\d  ${id}  ship1  cliCommand  \\S+ → done \\(exit 0\\)$`, "m");
      await watch.until(`the line of ${id} going to done`, () => done.test(watch.stdout));
      assert.equal(watch.stdout.match(new RegExp(`${id}.*→ done`, "g"))?.length, 1, "one line for the move to done");
      assert.doesNotMatch(watch.stdout, /ship2/, "the message to ship2 is not followed");
      assert.deepEqual(await watch.interrupt(), { code: 0, signal: null }, watch.stderr);
    } finally {
      watch.child.kill("SIGKILL");
    }
  });

  test("--state: only moves into the states named are shown, from the state the message was last seen in", async () => {
    const watch = new Watch(["--to", "ship2", "--state", "failed", "--json"]);
    try {
      await watch.until("the watch to start", () => watch.stderr.includes("watching for changes"));
      const events = () =>
        watch.stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as { event: string; from?: string | null; message: MessageView });
      assert.deepEqual(
        events().map((e) => [e.event, e.message.id]),
        [["current", ids.fails2]],
      );
      const [bad, good] = await fleet.sendOk("central", [
        cmd("ship2", ["/nonexistent/steward-test-command"]),
        cmd("ship2", ["true"]),
      ]);
      await watch.until(`${bad} to fail`, () => events().some((e) => e.message.id === bad));
      await fleet.waitState("central", good as string);
      const mine = events().filter((e) => e.event === "change");
      assert.equal(mine.length, 1, watch.stdout);
      assert.equal(mine[0]?.message.state, "failed");
      assert.equal(mine[0]?.message.toNode, "ship2");
      assert.notEqual(mine[0]?.from, "failed");
      assert.deepEqual(await watch.interrupt(), { code: 0, signal: null }, watch.stderr);
    } finally {
      watch.child.kill("SIGKILL");
    }
  });

  test("goes on across a restart of the node, saying it lost it and has it back", async () => {
    const central = fleet.node("central");
    const watch = new Watch(["--to", "ship1"]);
    try {
      await watch.until("the watch to start", () => watch.stderr.includes("watching for changes"));
      await central.stop();
      await watch.until("the watch to notice the node is gone", () => watch.stderr.includes("lost the node"));
      await central.start();
      await watch.until("the watch to have the node back", () => watch.stderr.includes("the node answers again"));
      const [id] = await fleet.sendOk("central", cmd("ship1", ["echo", "after restart"]));
      await watch.until(`the line of ${id} going to done`, () =>
        new RegExp(`${id}  ship1  cliCommand  \\S+ → done \\(exit 0\\)`).test(watch.stdout),
      );
      assert.deepEqual(await watch.interrupt(), { code: 0, signal: null }, watch.stderr);
    } finally {
      watch.child.kill("SIGKILL");
    }
  });
});
