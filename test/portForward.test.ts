/**
 * Port forwarding (portDst/portSrc): ship1's real TCP echo server and HTTP server, reached through a port
 * central listens on, with real nodes on a real broker. Bytes arrive in order (a 5 MiB stream too) over
 * several connections at once; either end's close reaches the other; a reader that stops reading (the client,
 * or the service) holds the writer back without either node buffering what it writes, keeps its session
 * however long it stops, and then gets every byte; methodTimeout ends the forward with
 * a result; frames injected from a raw NATS client (forged, replayed, signed by a third node) are dropped
 * and counted, and the stream is unchanged.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, get, type Server as HttpServer } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { cancelMessages, listMessages, query } from "../src/client/client.js";
import { portSubject } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort, TcpProxy } from "../src/harness/net.js";
import { Attacker, frameBody, Metrics } from "./helpers/attack-helpers.js";

const MAX_PAYLOAD = 32 * 1024;
let fleet: Fleet;
let echo: Server;
let web: HttpServer;
let attacker: Attacker;
let centralMetrics: Metrics;
let ship1Metrics: Metrics;
/** ship1's link to the broker, to cut mid-stream. */
let link: TcpProxy;
/** ship1's side of every connection its echo server took. */
const echoSockets: Socket[] = [];

const portOf = (s: Server | HttpServer): number => {
  const a = s.address();
  return typeof a === "object" && a ? a.port : 0;
};

before(async () => {
  const [prom1, prom2] = [await freePort(), await freePort()];
  // A small max_payload, so that the 5 MiB stream must be cut into many frames that each fit.
  const conf = join(mkdtempSync(join(tmpdir(), "steward-port-broker-")), "broker.conf");
  writeFileSync(conf, `max_payload: ${MAX_PAYLOAD}\n`);
  fleet = await Fleet.start("portForward", [], {}, { brokerArgs: ["-c", conf] });
  await fleet.add("central", { promHostAndPort: `127.0.0.1:${prom1}` });
  link = await TcpProxy.start({ port: Number(new URL(fleet.broker.url).port) });
  await fleet.add("ship1", {
    promHostAndPort: `127.0.0.1:${prom2}`,
    brokerAddress: link.url,
    natsConnectRetryInterval: 1,
  });
  centralMetrics = new Metrics(prom1);
  ship1Metrics = new Metrics(prom2);
  attacker = await Attacker.connect(fleet.broker.url);
  echo = createServer((socket) => {
    echoSockets.push(socket);
    socket.pipe(socket);
  });
  web = createHttpServer((_req, res) => res.end("<html>served on ship1</html>"));
  await Promise.all([
    new Promise<void>((r) => echo.listen(0, "127.0.0.1", r)),
    new Promise<void>((r) => web.listen(0, "127.0.0.1", r)),
  ]);
});

after(async () => {
  await attacker?.close();
  for (const s of echoSockets) s.destroy();
  web?.closeAllConnections();
  await Promise.all([new Promise((r) => echo?.close(r)), new Promise((r) => web?.close(r))]);
  await fleet?.close();
  await link?.close();
});

/** Ask central to forward its 127.0.0.1:<free port> to ship1's `target` port; resolves once it works. */
async function forward(target: number, methodTimeout: number): Promise<{ id: string; port: number }> {
  const port = await freePort();
  const [id] = await fleet.sendOk("central", {
    toNode: "central",
    method: "portDst",
    methodArgs: ["ship1", `127.0.0.1:${target}`, `127.0.0.1:${port}`],
    methodTimeout,
    replyMethod: "none",
  });
  await sleepUntil(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, "127.0.0.1", () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      }),
    { what: `central listening on ${port}` },
  );
  return { id: id as string, port };
}

/** A client connection through the forward that keeps what comes back. */
function client(port: number): Promise<{ socket: Socket; received: () => Buffer; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const ended = new Promise<void>((r) => socket.once("end", r));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.once("error", reject);
    socket.once("connect", () => resolve({ socket, received: () => Buffer.concat(chunks), ended }));
  });
}

async function echoed(port: number, bytes: Buffer): Promise<Buffer> {
  const c = await client(port);
  c.socket.write(bytes);
  await sleepUntil(() => c.received().length >= bytes.length, { what: "the echo", timeoutMs: 60_000 });
  c.socket.end();
  await c.ended;
  return c.received();
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** The ids of the portSrc messages central has sent. */
async function portSrcIds(): Promise<string[]> {
  return (await listMessages(fleet.node("central").socketPath, 200))
    .filter((v) => v.method === "portSrc")
    .map((v) => v.id);
}

/** The portSrc central sends for a forward started after `before` was taken. */
async function newPortSrc(before: string[]): Promise<string> {
  let id: string | undefined;
  await sleepUntil(async () => (id = (await portSrcIds()).find((i) => !before.includes(i))) !== undefined, {
    what: "central to send ship1 a portSrc",
  });
  return id as string;
}

/** Bytes a writer tries to push through the forward while its reader takes nothing. */
const FLOOD = 96 * 1024 * 1024;
/** The end of the flood read slowly: more than loopback's socket buffers hold, so the reader's side is full at its end. */
const SLOW_END = 24 * 1024 * 1024;

/** A node process's resident memory (VmRSS), in bytes. */
function rss(node: string): number {
  const status = readFileSync(`/proc/${fleet.node(node).pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
}

/**
 * A service on ship1, forwarded, that reads a request and then stops reading, and a client through the forward
 * that sends it `request` and reads nothing: both sockets, paused, once the request has arrived. The service's
 * socket is the first one that sends something (forward()'s probe sends nothing). Both go when `t` ends.
 */
async function requested(t: TestContext, request: string): Promise<{ client: Socket; service: Socket }> {
  const sockets: Socket[] = [];
  let took: (v: { socket: Socket; chunk: Buffer }) => void = () => {};
  const requestIn = new Promise<{ socket: Socket; chunk: Buffer }>((r) => (took = r));
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      took({ socket, chunk });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const { port } = await forward(portOf(server), 120);
  const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  t.after(() => client.destroy());
  await once(client, "connect");
  client.pause();
  client.write(request);
  const { socket, chunk } = await requestIn;
  assert.equal(chunk.toString(), request);
  return { client, service: socket };
}

/**
 * `writer` writes FLOOD bytes as fast as it is let (like any server: no more once write() says its buffer is
 * full, until 'drain'), while `reader` is paused and takes nothing. The nodes between them must pass that on
 * and hold the writer back, not buffer the flood: the writer gets only a small part in and neither node's
 * memory grows by much, even after `whileHeld`. Then `reader` reads again, and every byte arrives, in order.
 */
async function floodPausedReader(
  writer: Socket,
  reader: Socket,
  /** The node whose socket `writer` is connected to: its session sends the flood's frames. */
  writerNode: "central" | "ship1",
  whileHeld: () => Promise<void> = async () => {},
): Promise<void> {
  const readerNode = writerNode === "central" ? "ship1" : "central";
  // The flood's frames and their ACKs, as the broker carries them.
  const floodFrames = attacker.capture(portSubject(readerNode, writerNode));
  const ackFrames = attacker.capture(portSubject(writerNode, readerNode));
  await Promise.all([floodFrames.ready, ackFrames.ready]);
  const before = { central: rss("central"), ship1: rss("ship1") };
  const sent = createHash("sha256");
  let handed = 0;
  let waiting = false;
  let pushedBack = false;
  const writing = (async () => {
    while (handed < FLOOD) {
      const block = randomBytes(256 * 1024);
      sent.update(block);
      handed += block.length;
      if (!writer.write(block)) {
        pushedBack = waiting = true;
        await once(writer, "drain");
        waiting = false;
      }
    }
    writer.end();
  })();
  // Held back: waiting for 'drain', with nothing more taken over four polls in a row (or all of it taken: not held).
  let last = -1;
  let still = 0;
  await sleepUntil(
    () => {
      still = waiting && handed === last ? still + 1 : 0;
      last = handed;
      return still >= 4 || handed >= FLOOD;
    },
    { intervalMs: 250, timeoutMs: 30_000, what: "the writer to be held back" },
  );
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  assert.ok(pushedBack, "the writer's write() said its buffer was full");
  // What the writer got in sits in the four sockets' kernel buffers (some MiB on loopback) and 16 frames.
  assert.ok(handed < FLOOD / 4, `the writer got ${mib(handed)} of ${mib(FLOOD)} in while nothing was read`);
  await whileHeld();
  // Half, not less: a node's first heavy traffic grows its heap by some tens of MiB whatever it carries (when this
  // test runs alone); a node that buffers the flood grows by more than all of it.
  for (const node of ["central", "ship1"] as const) {
    const grown = rss(node) - before[node];
    assert.ok(grown < FLOOD / 2, `${node}'s memory grew by ${mib(grown)} while nothing was read`);
  }

  const got = createHash("sha256");
  let received = 0;
  const ended = once(reader, "end");
  reader.on("data", (chunk: Buffer) => {
    got.update(chunk);
    received += chunk.length;
    // The end read slowly, as a client at the end of a download over a slow line: the reader's side is full
    // (its ACK held) when the writer's end arrives.
    if (FLOOD - received < SLOW_END) {
      reader.pause();
      setTimeout(() => reader.resume(), 10);
    }
  });
  reader.resume();
  await sleepUntil(() => received >= FLOOD, { what: () => `the flood read (${mib(received)})`, timeoutMs: 60_000 });
  await Promise.all([writing, ended]);
  assert.equal(received, FLOOD);
  assert.equal(got.digest("hex"), sent.digest("hex"));
  // The writer's end (fin) reached the reader's side while it held its ACK for a full socket: that ACK still
  // goes, the fin with it, so the sending session ends rather than probing until the forward's time is up.
  const bodies = (c: typeof floodFrames) =>
    c.frames.map((f) => frameBody(f.data) as { s: string; t: string; q?: number; a?: number });
  await sleepUntil(() => bodies(floodFrames).some((f) => f.t === "fin"), { what: "the writer's fin on the broker" });
  const fin = bodies(floodFrames).find((f) => f.t === "fin") as { s: string; q: number };
  try {
    await sleepUntil(() => bodies(ackFrames).some((f) => f.t === "ack" && f.s === fin.s && (f.a ?? -1) >= fin.q), {
      what: () => `${readerNode} to ACK the fin (frame ${fin.q})`,
      timeoutMs: 20_000,
    });
  } finally {
    floodFrames.stop();
    ackFrames.stop();
  }
}

describe("port forwarding", () => {
  let echoForward: { id: string; port: number };

  test("bytes round-trip in order: a 5 MiB stream and several connections at once", async () => {
    echoForward = await forward(portOf(echo), 120);
    const frames = attacker.capture(portSubject("ship1", "central"));
    await frames.ready;
    const big = randomBytes(5 * 1024 * 1024);
    const back = await echoed(echoForward.port, big);
    frames.stop();
    assert.equal(back.length, big.length);
    assert.equal(sha(back), sha(big));
    assert.ok(frames.frames.length > big.length / MAX_PAYLOAD, `${frames.frames.length} frames`);
    assert.ok(frames.frames.every((f) => f.data.length <= MAX_PAYLOAD));
    const texts = Array.from({ length: 5 }, (_, i) => Buffer.from(`connection ${i}: ${"x".repeat(1000 * (i + 1))}`));
    const backs = await Promise.all(texts.map((t) => echoed(echoForward.port, t)));
    backs.forEach((b, i) => assert.equal(b.toString(), texts[i]?.toString()));
  });

  test("frames lost while ship1's broker link is down are sent again: the stream arrives whole", async () => {
    const [first, second] = [randomBytes(256 * 1024), randomBytes(1024 * 1024)];
    const c = await client(echoForward.port);
    c.socket.write(first);
    await sleepUntil(() => c.received().length >= first.length, { what: "the first part back" });
    link.cut("reset");
    // Written while ship1 is off the broker: its frames are lost, and both ends send them again once it is back.
    c.socket.write(second);
    await sleepUntil(async () => (await query(fleet.node("ship1").socketPath, "health", {})).broker !== "up", {
      what: "ship1 to see its broker link down",
    });
    link.restore();
    const all = first.length + second.length;
    await sleepUntil(() => c.received().length >= all, { what: "the whole stream back", timeoutMs: 60_000 });
    c.socket.end();
    await c.ended;
    const big = Buffer.concat([first, second]);
    assert.equal(sha(c.received()), sha(big));
  });

  test("a client that does not read holds the service back: neither node buffers the flood, and it all arrives", async (t) => {
    const { client: c, service: socket } = await requested(t, "send me everything\n");
    await floodPausedReader(socket, c, "ship1", async () => {
      // Held longer than a peer that is gone is given (its frames sent again 15 times: src/methods/portSession.ts):
      // a client that does not read is still there, and its session stays.
      const frames = attacker.capture(portSubject("central", "ship1"));
      await frames.ready;
      const tries = new Map<unknown, number>();
      let reset = false;
      let seen = 0;
      await sleepUntil(
        () => {
          for (const f of frames.frames.slice(seen)) {
            const { t, q } = frameBody(f.data);
            reset ||= t === "rst";
            if (t === "data") tries.set(q, (tries.get(q) ?? 0) + 1);
          }
          seen = frames.frames.length;
          return reset || Math.max(0, ...tries.values()) >= 16;
        },
        { what: "ship1 to send the held frames 16 times", timeoutMs: 60_000, intervalMs: 250 },
      );
      frames.stop();
      assert.equal(reset, false, "the session was reset while its client only did not read");
      // Told "full", ship1 asks with one frame at a time, not its whole window each second.
      const repeated = [...tries.values()].filter((n) => n > 3).length;
      assert.equal(repeated, 1, `frames sent more than 3 times: ${repeated} (${JSON.stringify([...tries])})`);
    });
  });

  test("a service that does not read holds the client back: neither node buffers the flood, and it all arrives", async (t) => {
    const { client: c, service: socket } = await requested(t, "here it comes\n");
    await floodPausedReader(c, socket, "central");
  });

  test("an HTTP GET through the forward returns the body", async () => {
    const { port } = await forward(portOf(web), 120);
    const body = await new Promise<string>((resolve, reject) => {
      get(`http://127.0.0.1:${port}/`, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve(text));
      }).on("error", reject);
    });
    assert.equal(body, "<html>served on ship1</html>");
  });

  test("the client's close closes the far socket; the server's close reaches the client as EOF", async () => {
    const before = echoSockets.length;
    const c = await client(echoForward.port);
    c.socket.write("one");
    await sleepUntil(() => echoSockets.length > before && c.received().toString() === "one");
    const far = echoSockets[before] as Socket;
    const farClosed = new Promise<void>((r) => (far.closed ? r() : far.once("close", () => r())));
    c.socket.end();
    await farClosed;
    await c.ended;

    const d = await client(echoForward.port);
    d.socket.write("two");
    await sleepUntil(() => echoSockets.length > before + 1 && d.received().toString() === "two");
    (echoSockets[before + 1] as Socket).end();
    await d.ended;
    assert.equal(d.received().toString(), "two");
    d.socket.destroy();
  });

  test("frames injected into a session are dropped and the stream is unchanged", async () => {
    const toShip1 = attacker.capture(portSubject("ship1", "central"));
    await toShip1.ready;
    const c = await client(echoForward.port);
    c.socket.write("first;");
    await sleepUntil(() => c.received().toString() === "first;");
    const data = toShip1.frames.find((f) => frameBody(f.data).t === "data");
    assert.ok(data, "a data frame was captured");
    const body = frameBody(data.data);
    const header = data.data.subarray(0, data.data.indexOf(10) + 1);
    const ship2 = await fleet.peer("ship2");
    // Replayed verbatim: a duplicate, ACKed again and never written twice (the later bytes show it).
    await attacker.request(data.subject, data.data);
    // Edited under central's signature: fails verification on ship1.
    const edited = Buffer.concat([header, Buffer.from(JSON.stringify({ ...body, q: Number(body.q) + 1 }))]);
    await ship1Metrics.dropsDuring({ "bad signature": 1 }, () => attacker.request(data.subject, edited));
    // Signed by another admitted node, for this forwarding: not one of its two nodes.
    const toCentral = portSubject("central", "ship2");
    await centralMetrics.dropsDuring({ "port frame": 1 }, () =>
      attacker.request(toCentral, ship2.seal(toCentral, { ...body, d: Buffer.from("forged").toString("base64") })),
    );
    c.socket.write("second");
    await sleepUntil(() => c.received().length >= "first;second".length);
    c.socket.end();
    await c.ended;
    assert.equal(c.received().toString(), "first;second");
    toShip1.stop();
    // The session is over: its open replayed starts no connection to the service.
    const open = toShip1.frames.find((f) => frameBody(f.data).t === "open");
    assert.ok(open);
    const sockets = echoSockets.length;
    await sleepUntil(() => echoSockets.every((s) => s.closed));
    await ship1Metrics.dropsDuring({ "port frame": 1 }, () => attacker.request(open.subject, open.data));
    assert.match(await echoed(echoForward.port, Buffer.from("third")).then(String), /^third$/);
    assert.equal(echoSockets.length, sockets + 1, "only the legitimate connection reached the service");
  });

  test("methodTimeout ends the forward: the listener stops and the message is done with its counts", async () => {
    const f = await forward(portOf(echo), 3);
    assert.equal((await echoed(f.port, Buffer.from("short"))).toString(), "short");
    const m = await fleet.waitState("central", f.id, "done");
    // Two sessions: forward()'s probe that the port listens, and the echo.
    assert.match(m.result?.data ?? "", /2 sessions, 5 bytes sent, 5 bytes received/);
    await assert.rejects(client(f.port), /ECONNREFUSED/);
  });

  test("a cancelled forward ends on both nodes at once: the service's node hears it and ends its side", async () => {
    const before = await portSrcIds();
    const f = await forward(portOf(echo), 120);
    const portSrc = await newPortSrc(before);
    // Running on ship1: the forwarding's end reaches it as a frame (one not running yet is withdrawn instead).
    await fleet.waitState("central", portSrc, "running");
    const [outcome] = await cancelMessages(fleet.node("central").socketPath, { ids: [f.id], by: "test" });
    assert.equal(outcome?.outcome, "cancelled", JSON.stringify(outcome));
    await fleet.waitState("central", f.id, "cancelled");
    await assert.rejects(client(f.port), /ECONNREFUSED/);
    const m = await fleet.waitState("central", portSrc, "done");
    assert.match(m.result?.data ?? "", /ended by central/);
  });

  test("forwarding takes the rules' leave at both ends: portDst where it listens, portSrc where the service is", async () => {
    const ask = async () => {
      const [id] = await fleet.sendOk("ship1", {
        toNode: "ship1",
        method: "portDst",
        methodArgs: ["central", `127.0.0.1:${portOf(echo)}`, `127.0.0.1:${await freePort()}`],
        methodTimeout: 30,
        replyMethod: "none",
      });
      return fleet.waitState("ship1", id as string, "failed");
    };
    // The default rules: only central forwards.
    assert.match((await ask()).reason ?? "", /not allowed: ship1 may not call portDst on ship1/);
    const { bundle } = await query(fleet.node("central").socketPath, "setAcl", {
      acl: {
        rules: [
          { from: ["central"], methods: ["*"], to: ["*"] },
          { from: ["ship1"], methods: ["portDst"], to: ["self"] },
        ],
      },
    });
    await fleet.waitBundle(bundle);
    // ship1 may listen now, but central takes no portSrc from it: the forward fails with central's reason.
    assert.match(
      (await ask()).reason ?? "",
      /the forwarding ended on central \(portSrc failed: not allowed: ship1 may not call portSrc on central/,
    );
  });

  test("a forward cancelled while the service's node is away withdraws its portSrc: it never runs there", async () => {
    const ship1 = fleet.node("ship1");
    await ship1.stop();
    const before = await portSrcIds();
    const cancelsBefore = (await listMessages(fleet.node("central").socketPath, 200)).filter(
      (v) => v.method === "cancel",
    );
    const f = await forward(portOf(echo), 120);
    const portSrc = await newPortSrc(before);
    // Sent at least once (no ACK: ship1 is away), so a signed cancel must follow it there.
    await sleepUntil(async () => (await fleet.status("central", portSrc)).attempt >= 1, {
      what: "central to send the portSrc once",
    });
    await cancelMessages(fleet.node("central").socketPath, { ids: [f.id], by: "test" });
    await fleet.waitState("central", f.id, "cancelled");
    assert.match((await fleet.waitState("central", portSrc, "cancelled")).reason ?? "", /portDst .* ended/);
    await ship1.start();
    // The positive signal: the cancel that followed the portSrc is ACKed by ship1 (it left a tombstone there),
    // and a later message from central to ship1 has run.
    const cancel = (await listMessages(fleet.node("central").socketPath, 200)).find(
      (v) => v.method === "cancel" && !cancelsBefore.some((c) => c.id === v.id),
    );
    assert.ok(cancel, "a signed cancel followed the portSrc");
    await fleet.waitState("central", cancel.id, "done", 60_000);
    const [later] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "later"],
    });
    await fleet.waitState("central", later as string, "done", 60_000);
    assert.equal((await fleet.status("central", portSrc)).state, "cancelled", "no result came back from a run");
    const served = readFileSync(ship1.logPath, "utf8")
      .split("\n")
      .filter((l) => l.includes("port forwarding serves") && l.includes(portSrc));
    assert.deepEqual(served, [], "ship1 never ran the withdrawn portSrc");
  });

  test("a listening node stopped during a forward does not forward again at its next start: the result says why", async () => {
    const central = fleet.node("central");
    const f = await forward(portOf(echo), 120);
    assert.equal((await echoed(f.port, Buffer.from("before the stop"))).toString(), "before the stop");
    await central.stop();
    await central.start();
    const m = await fleet.waitState("central", f.id, "failed", 60_000);
    assert.match(m.reason ?? "", /the forwarding ended when central stopped/);
    assert.equal(m.interrupted, true);
    await assert.rejects(client(f.port), /ECONNREFUSED/);
  });
});
