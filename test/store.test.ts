/**
 * The store's group commit (src/store/store.ts): every write is committed at
 * once, and `durable()` syncs the WAL so that many writes share one disk sync.
 * Real SQLite files; the ordering check traces the real node process's
 * system calls with strace where it is installed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import type { Envelope } from "../src/message/message.js";
import { LocalNatsServer } from "../src/broker/localServer.js";
import { Store } from "../src/store/store.js";
import { submit } from "../src/client/client.js";
import { sleepUntil, STEWARD_BIN } from "./helpers/fleet.js";

function envelope(id: string): Envelope {
  return {
    id,
    toNode: "ship1",
    fromNode: "central",
    method: "ping",
    methodArgs: [],
    replyMethod: "none",
    replyMethodArgs: [],
    ACKTimeout: 5,
    retries: 1,
    retryWait: 0,
    replyACKTimeout: 5,
    replyRetries: 1,
    methodTimeout: 5,
    replyMethodTimeout: 5,
    attempt: 0,
  };
}

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
          store.addOutgoing(envelope(`m${i}`));
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
      store.addOutgoing(envelope("x"));
      await store.durable();
      const syncs = store.syncs;
      store.getOutgoing("x"); // reads are not writes
      await store.durable();
      assert.equal(store.syncs, syncs);
    } finally {
      store.close();
    }
  });

  test("a write awaited while a sync runs gets a sync of its own", async () => {
    const store = new Store(join(dir, "c"), "central");
    try {
      store.addOutgoing(envelope("first"));
      const first = store.durable();
      const syncs = store.syncs; // the first sync is under way
      store.addOutgoing(envelope("second"));
      await Promise.all([first, store.durable()]);
      assert.equal(store.syncs, syncs + 1, "the second write was not taken as covered by the sync already running");
    } finally {
      store.close();
    }
  });

  test("closing the store fails the waits it cannot confirm, with a reason", async () => {
    const store = new Store(join(dir, "d"), "central");
    store.addOutgoing(envelope("y"));
    const waiting = store.durable();
    store.addOutgoing(envelope("z"));
    const second = store.durable();
    store.close();
    await waiting.catch(() => undefined); // the sync under way may still confirm the first
    await assert.rejects(second, /closed before the write was confirmed on disk/);
  });
});

describe("store: 'accepted' is said only after the disk sync (strace)", { skip: spawnSync("strace", ["-V"]).status !== 0 && "strace is not installed" }, () => {
  let broker: LocalNatsServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "steward-test-strace-"));
    broker = await LocalNatsServer.start({ dir: join(dir, "broker") });
  });
  after(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the node's fdatasync of its WAL comes before the answer is written to the socket", async () => {
    const trace = join(dir, "trace.txt");
    const socketFolder = join(dir, "sock");
    // -f: the sync runs on a libuv worker thread; -tt orders the lines by time across threads.
    const flags = {
      nodeName: "central",
      centralNodeName: "central",
      brokerAddress: broker.url,
      configFolder: join(dir, "etc"),
      socketFolder,
      databaseFolder: join(dir, "var"),
      subscribersDataFolder: join(dir, "data"),
      readFolder: join(dir, "readfolder"),
      logLevel: "error",
    };
    // -f: the sync runs on a libuv worker thread; strace writes the lines of all threads in the order they happened.
    const child = spawn(
      "strace",
      ["-f", "-e", "trace=fdatasync,read,write", "-s", "80", "-o", trace, process.execPath, STEWARD_BIN, "start", ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`)],
      // Its own process group: strace blocks SIGTERM while it traces (-o FILE PROG), so the group is signalled.
      { cwd: dir, stdio: "ignore", detached: true },
    );
    try {
      const sock = join(socketFolder, "steward.sock");
      await sleepUntil(async () => {
        try {
          return (await submit(sock, JSON.stringify({ toNode: "nowhere", method: "ping", ACKTimeout: 1, retries: 0, id: "traced-1" })))[0]?.ok === true;
        } catch {
          return false;
        }
      }, { timeoutMs: 15_000, what: "the traced node to accept a message" });
      const lines = readFileSync(trace, "utf8").split("\n");
      const read = lines.findIndex((l) => / read\(\d+, ".*traced-1/.test(l));
      const answered = lines.findIndex((l) => l.includes("accepted traced-1"));
      assert.ok(read > 0 && answered > read, "the document's read and the answer are in the trace, in that order");
      // A sync that started after the document was read and ended before the answer was written.
      const between = lines.slice(read + 1, answered);
      const synced = between.some((l, i) => {
        const start = /^(\d+) +fdatasync\(\d+(.*)$/.exec(l);
        if (!start) return false;
        if (!start[2]?.includes("unfinished")) return true;
        return between.slice(i + 1).some((m) => m.startsWith(`${start[1]} `) && m.includes("fdatasync resumed"));
      });
      assert.ok(synced, `no disk sync between reading the document and answering it:\n${between.join("\n")}`);
    } finally {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-(child.pid as number), "SIGTERM");
      await exited;
    }
  });
});
