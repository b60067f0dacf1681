/**
 * The broker link (src/delivery/transport.ts) on its own, against a real
 * nats-server: it connects when the broker comes, reconnects after the
 * broker is killed and restarted (state down → up, onUp again, its
 * subscriptions back), publishing while down returns false without throwing,
 * it reports the broker's max_payload, and a setting it cannot use is one log
 * line that names it. Refused credentials are covered in security.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { type TransportOptions, Transport } from "../src/delivery/transport.js";
import { sleepUntil } from "../src/harness/fleet.js";
import { LocalNatsServer } from "../src/harness/natsServer.js";
import { freePort } from "../src/harness/net.js";
import type { Logger } from "../src/log.js";

const dir = mkdtempSync(join(tmpdir(), "steward-test-transport-"));
const closeAfter: (() => Promise<void>)[] = [];

afterEach(async () => {
  await Promise.allSettled(closeAfter.splice(0).map((close) => close()));
});
after(() => {
  if (!process.env.KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
});

/** A logger that keeps its lines, to check what the link said and how often. */
function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: keep("debug"), info: keep("info"), warn: keep("warn"), error: keep("error") };
}

async function startBroker(opts: { port?: number; args?: string[] } = {}): Promise<LocalNatsServer> {
  const broker = await LocalNatsServer.start({ dir, ...opts });
  closeAfter.push(() => broker.stop());
  return broker;
}

/** A running transport (its run() task is awaited at close). */
function startTransport(brokerAddress: string, extra: Partial<TransportOptions> = {}) {
  const log = recordingLog();
  const transport = new Transport({ brokerAddress, nodeName: "ship1", retryInterval: 1, log, ...extra });
  let ups = 0;
  transport.onUp(() => ups++);
  const task = transport.run();
  closeAfter.unshift(async () => {
    await transport.close();
    await task;
  });
  return { transport, log, ups: () => ups };
}

test("connects once the broker comes up, and reports the broker's max_payload", async () => {
  const port = await freePort();
  const { transport, ups } = startTransport(`nats://127.0.0.1:${port}`);
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(transport.state, "connecting");
  assert.equal(transport.maxPayload, 1024 * 1024, "before any connection: the NATS default");
  const conf = join(dir, "small-payload.conf");
  writeFileSync(conf, "max_payload: 65536\n");
  await startBroker({ port, args: ["-c", conf] });
  await sleepUntil(() => transport.state === "up", { timeoutMs: 10_000, what: "the link to come up" });
  assert.equal(ups(), 1);
  assert.equal(transport.maxPayload, 65536);
});

test("the broker killed and restarted: down, publish returns false, then up again with onUp and its subscriptions", async () => {
  const broker = await startBroker();
  const { transport, log, ups } = startTransport(broker.url);
  const received: string[] = [];
  transport.subscribe("test.transport", (msg) => received.push(new TextDecoder().decode(msg.data)));
  await sleepUntil(() => transport.state === "up", { timeoutMs: 10_000, what: "the link to come up" });
  assert.equal(ups(), 1);

  await broker.kill();
  await sleepUntil(() => transport.state === "down", { timeoutMs: 20_000, what: "the link to go down" });
  assert.equal(transport.publish("test.transport", new TextEncoder().encode("while down")), false);
  await assert.rejects(
    transport.request("test.transport", new Uint8Array(), 1000, () => true),
    /not connected to the broker/,
  );

  await broker.restart();
  await sleepUntil(() => transport.state === "up", { timeoutMs: 20_000, what: "the link to come back" });
  assert.equal(ups(), 2, "onUp fires again on reconnect");
  assert.ok(
    log.lines.some((l) => l.startsWith("warn lost the broker")),
    log.lines.join("\n"),
  );

  // A second link publishes; the first one's subscription made before the kill still receives.
  const { transport: sender } = startTransport(broker.url);
  await sleepUntil(() => sender.state === "up", { timeoutMs: 10_000, what: "the sender's link" });
  await sleepUntil(
    () => {
      sender.publish("test.transport", new TextEncoder().encode("after restart"));
      return received.includes("after restart");
    },
    { timeoutMs: 10_000, intervalMs: 200, what: "the subscription to receive after the restart" },
  );
  assert.ok(!received.includes("while down"));
});

test("a setting it cannot use is one log line naming the setting, not one per retry", async () => {
  const broker = await startBroker();
  const seed = join(dir, "ship1.nk");
  const creds = join(dir, "ship1.creds");
  writeFileSync(seed, "SUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
  writeFileSync(creds, "");
  const both = startTransport(broker.url, { nkeySeedFile: seed, credsFile: creds });
  const keyOnly = startTransport(broker.url, { tlsKeyFile: join(dir, "client.key") });
  const problem = (lines: string[], text: RegExp) => lines.filter((l) => text.test(l));
  await sleepUntil(() => problem(both.log.lines, /set only one/).length > 0 && keyOnly.log.lines.length > 0, {
    timeoutMs: 10_000,
    what: "the problems to be logged",
  });
  await new Promise((r) => setTimeout(r, 3_000)); // three more attempts, one a second
  const bothLines = problem(both.log.lines, /nkeySeedFile .*natsCredsFile .*set only one/);
  assert.equal(bothLines.length, 1, both.log.lines.join("\n"));
  assert.ok(bothLines[0]?.includes(seed) && bothLines[0].includes(creds), bothLines[0]);
  const keyLines = problem(keyOnly.log.lines, /tlsKeyFile \S+client.key is set but tlsCertFile is not/);
  assert.equal(keyLines.length, 1, keyOnly.log.lines.join("\n"));
  assert.equal(both.transport.state, "connecting");
  assert.equal(keyOnly.transport.state, "connecting");
});

test("close() while connecting ends run() and whenUp() at once", async () => {
  const port = await freePort();
  const log = recordingLog();
  const transport = new Transport({ brokerAddress: `127.0.0.1:${port}`, nodeName: "ship1", retryInterval: 1, log });
  const task = transport.run();
  const waiting = transport.whenUp();
  await new Promise((r) => setTimeout(r, 500));
  await transport.close();
  await Promise.race([
    Promise.all([task, waiting]),
    new Promise((_, reject) => setTimeout(() => reject(new Error("run() or whenUp() still pending")), 5_000)),
  ]);
  assert.equal(transport.state, "closed");
});
