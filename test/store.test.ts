/**
 * The store's group commit (src/store/groupCommit.ts): every write is committed at
 * once, and `durable()` syncs the WAL so that many writes share one disk sync.
 * Real SQLite files; the ordering check traces the real node process's
 * system calls with strace where it is installed.
 */
import Database from "better-sqlite3";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { submit } from "../src/client/client.js";
import { sleepUntil, STEWARD_BIN } from "../src/harness/fleet.js";
import { LocalNatsServer } from "../src/harness/natsServer.js";
import { Store } from "../src/store/store.js";
import { envelope } from "./helpers/delivery-helpers.js";

/** A message from central to ship1. */
const message = (id: string) => envelope({ id, fromNode: "central", toNode: "ship1", method: "ping" });

describe("store: group commit", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "steward-test-store-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("200 writes awaited at once share at most two disk syncs, and all of them are in the file", async () => {
    const store = new Store(join(dir, "a"), "central");
    try {
      const before = store.syncs;
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => {
          store.outgoing.add(message(`m${i}`));
          return store.durable();
        }),
      );
      // The first call starts a sync; the 199 others arrive while it runs and share the next one.
      assert.ok(store.syncs - before <= 2, `${store.syncs - before} syncs for 200 writes`);
      // Another connection (another process would see the same) reads every row.
      const other = new Database(store.path, { readonly: true });
      try {
        assert.equal((other.prepare("SELECT COUNT(*) AS n FROM outbox").get() as { n: number }).n, 200);
      } finally {
        other.close();
      }
    } finally {
      store.close();
    }
  });

  test("durable() with nothing written since the last sync resolves without syncing", async () => {
    const store = new Store(join(dir, "b"), "central");
    try {
      store.outgoing.add(message("x"));
      await store.durable();
      const syncs = store.syncs;
      store.outgoing.get("x"); // reads are not writes
      await store.durable();
      assert.equal(store.syncs, syncs);
    } finally {
      store.close();
    }
  });

  test("a write awaited while a sync runs gets a sync of its own", async () => {
    const store = new Store(join(dir, "c"), "central");
    try {
      store.outgoing.add(message("first"));
      const first = store.durable();
      const syncs = store.syncs; // the first sync is under way
      store.outgoing.add(message("second"));
      await Promise.all([first, store.durable()]);
      assert.equal(store.syncs, syncs + 1, "the second write was not taken as covered by the sync already running");
    } finally {
      store.close();
    }
  });

  test("closing the store fails the waits it cannot confirm, with a reason", async () => {
    const store = new Store(join(dir, "d"), "central");
    store.outgoing.add(message("y"));
    const waiting = store.durable();
    store.outgoing.add(message("z"));
    const second = store.durable();
    store.close();
    await waiting.catch(() => undefined); // the sync under way may still confirm the first
    await assert.rejects(second, /closed before the write was confirmed on disk/);
  });
});

/** A node run under `strace -f`, tracing its reads, writes and disk syncs into `trace`. */
function tracedNode(dir: string, nodeName: string, brokerAddress: string, trace: string, central = "central") {
  const flags = {
    nodeName,
    centralNodeName: central,
    // Central admits the other traced node's key at its first hello.
    autoApproveKeys: nodeName === central ? 1 : 0,
    brokerAddress,
    configFolder: join(dir, nodeName, "etc"),
    socketFolder: join(dir, nodeName, "sock"),
    databaseFolder: join(dir, nodeName, "var"),
    subscribersDataFolder: join(dir, nodeName, "data"),
    readFolder: join(dir, nodeName, "readfolder"),
    logLevel: "error",
  };
  // -f: the sync runs on a libuv worker thread; strace writes the lines of all threads in the order they happened.
  const child = spawn(
    "strace",
    [
      "-f",
      "-e",
      "trace=fdatasync,read,write",
      "-s",
      "400",
      "-o",
      trace,
      process.execPath,
      STEWARD_BIN,
      "start",
      ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`),
    ],
    // Its own process group: strace blocks SIGTERM while it traces (-o FILE PROG), so the group is signalled.
    { cwd: dir, stdio: "ignore", detached: true },
  );
  return {
    socketPath: join(flags.socketFolder, "steward.sock"),
    async stop(): Promise<void> {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-(child.pid as number), "SIGTERM");
      await exited;
    },
  };
}

/**
 * In a trace, between the first line that matches `from` and the first later one that matches
 * `to`: did a disk sync start after `from` and finish before `to`? Returns the lines between when not.
 */
function syncBetween(trace: string, from: RegExp, to: RegExp): string | undefined {
  const lines = readFileSync(trace, "utf8").split("\n");
  const start = lines.findIndex((l) => from.test(l));
  const end = start < 0 ? -1 : lines.findIndex((l, i) => i > start && to.test(l));
  assert.ok(start > 0 && end > start, `the trace holds ${from} and then ${to}`);
  const between = lines.slice(start + 1, end);
  const synced = between.some((l, i) => {
    const begun = /^(\d+) +fdatasync\(\d+(.*)$/.exec(l);
    if (!begun) return false;
    if (!begun[2]?.includes("unfinished")) return true;
    return between.slice(i + 1).some((m) => m.startsWith(`${begun[1]} `) && m.includes("fdatasync resumed"));
  });
  return synced ? undefined : between.join("\n");
}

describe(
  "store: 'accepted' and the ACK are said only after the disk sync (strace)",
  { skip: spawnSync("strace", ["-V"]).status !== 0 && "strace is not installed" },
  () => {
    let broker: LocalNatsServer;
    let dir: string;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "steward-test-strace-"));
      broker = await LocalNatsServer.start({ dir: join(dir, "broker") });
    });
    after(async () => {
      await broker.stop();
      if (!process.env.KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
    });

    const accept = async (socketPath: string, doc: unknown): Promise<boolean> => {
      try {
        return (await submit(socketPath, JSON.stringify(doc)))[0]?.ok === true;
      } catch {
        return false; // not listening yet
      }
    };

    test("guarantee 1: the node's fdatasync of its WAL comes before 'accepted' is written to the socket", async () => {
      const trace = join(dir, "central.trace");
      const central = tracedNode(dir, "central", broker.url, trace);
      try {
        await sleepUntil(
          () =>
            accept(central.socketPath, {
              toNode: "nowhere",
              method: "ping",
              ACKTimeout: 1,
              retries: 0,
              id: "traced-1",
            }),
          {
            timeoutMs: 15_000,
            what: "the traced node to accept a message",
          },
        );
        const gap = syncBetween(trace, / read\(\d+, ".*traced-1/, /accepted traced-1/);
        assert.equal(gap, undefined, `no disk sync between reading the document and answering it:\n${gap}`);
      } finally {
        await central.stop();
      }
    });

    test("guarantee 2: the receiver's fdatasync comes after the message arrives and before its ACK leaves", async () => {
      const centralTrace = join(dir, "central2.trace");
      const shipTrace = join(dir, "ship1.trace");
      const central = tracedNode(dir, "central2", broker.url, centralTrace, "central2");
      const ship1 = tracedNode(dir, "ship1", broker.url, shipTrace, "central2");
      try {
        // A cliCommand: its run must wait for the sync as well, so that a crash's re-run is marked (guarantee 5).
        await sleepUntil(
          () =>
            accept(central.socketPath, {
              toNode: "ship1",
              method: "cliCommand",
              methodArgs: ["true"],
              id: "traced-2",
              ACKTimeout: 5,
              retries: 5,
            }),
          {
            timeoutMs: 15_000,
            what: "the traced central to accept a message",
          },
        );
        // strace shows the quotes of the ACK escaped.
        await sleepUntil(() => /\\"ack\\":\\"traced-2\\"/.test(readFileSync(shipTrace, "utf8")), {
          timeoutMs: 20_000,
          what: "ship1 to ACK traced-2",
        });
        const gap = syncBetween(shipTrace, / read\(\d+, "MSG ship1\.cliCommand.*traced-2/, /\\"ack\\":\\"traced-2\\"/);
        assert.equal(gap, undefined, `no disk sync between the message's arrival and its ACK:\n${gap}`);
      } finally {
        await Promise.all([central.stop(), ship1.stop()]);
      }
    });
  },
);
