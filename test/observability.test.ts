/**
 * Observability: Prometheus metrics scraped over HTTP, the read-only view of
 * the data folder (and that nothing outside it can be read), and the audit
 * log (re-creating a message from it, and rotation by size).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";

let fleet: Fleet;
let centralProm: number;
let ship1Prom: number;
let dataPort: number;

/** An HTTP request with the path sent exactly as given (fetch would normalise "../" away). */
function raw(
  port: number,
  path: string,
  method = "GET",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one series, e.g. `steward_messages_accepted_total{method="ping",to_node="ship1"}`; undefined when absent. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** One line of audit.log, as the tests read it. */
interface AuditLine {
  time: string;
  event: "accepted" | "executed";
  message?: {
    id: string;
    fromNode: string;
    attempt: number;
    toNode: string;
    method: string;
    methodArgs: string[];
  } & Record<string, unknown>;
  fromNode?: string;
  id?: string;
  method?: string;
  exitCode?: number | null;
  error?: string;
  durationMs?: number;
}

function auditLines(path: string): AuditLine[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditLine);
}

before(async () => {
  fleet = await Fleet.start("observe");
  [centralProm, ship1Prom, dataPort] = [await freePort(), await freePort(), await freePort()];
  await fleet.add("central", {
    promHostAndPort: `127.0.0.1:${centralProm}`,
    exposeDataFolder: `127.0.0.1:${dataPort}`,
  });
  await fleet.add("ship1", { promHostAndPort: `:${ship1Prom}` });
});
after(() => fleet.close());

describe("metrics (promHostAndPort)", () => {
  test("counters move on the sender and the receiver; broker link and last hello are shown", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "counted"],
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");

    const central = await scrape(centralProm);
    const out = '{method="cliCommand",to_node="ship1"}';
    assert.ok((value(central, `steward_messages_accepted_total${out}`) ?? 0) >= 1, central);
    assert.ok((value(central, `steward_messages_sent_total${out}`) ?? 0) >= 1, central);
    assert.ok((value(central, `steward_messages_acked_total${out}`) ?? 0) >= 1, central);
    assert.equal(value(central, "steward_broker_connected"), 1);
    assert.equal(typeof value(central, "steward_messages_in_flight"), "number");
    // Every series has its HELP and TYPE, and every sample line is well-formed.
    for (const line of central.split("\n").filter((l) => l && !l.startsWith("#"))) {
      assert.match(
        line,
        /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/,
        line,
      );
    }
    assert.match(central, /# TYPE steward_method_duration_seconds histogram/);

    // Central records ship1's hellos: the gauge is a recent unix time in seconds.
    let hello: number | undefined;
    await sleepUntil(async () => {
      hello = value(await scrape(centralProm), 'steward_node_last_hello_timestamp_seconds{node="ship1"}');
      return hello !== undefined;
    });
    assert.ok(Math.abs((hello as number) - Date.now() / 1000) < 60, String(hello));

    // The receiver counts what it ran, with its duration, and the reply it sent back.
    const ship1 = await scrape(ship1Prom);
    assert.ok(
      (value(ship1, 'steward_messages_executed_total{method="cliCommand",from_node="central"}') ?? 0) >= 1,
      ship1,
    );
    assert.ok((value(ship1, 'steward_method_duration_seconds_count{method="cliCommand"}') ?? 0) >= 1, ship1);
    assert.ok((value(ship1, 'steward_method_duration_seconds_bucket{method="cliCommand",le="+Inf"}') ?? 0) >= 1, ship1);
    assert.ok((value(ship1, 'steward_messages_sent_total{method="fileAppend",to_node="central"}') ?? 0) >= 1, ship1);
  });

  test("a message to a node that does not exist is retried, then counted as failed", async () => {
    const [id] = await fleet.sendOk("central", { toNode: "nowhere", method: "ping", ACKTimeout: 1, retries: 1 });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed");
    const text = await scrape(centralProm);
    const out = '{method="ping",to_node="nowhere"}';
    assert.equal(value(text, `steward_messages_failed_total${out}`), 1, text);
    assert.equal(value(text, `steward_messages_sent_total${out}`), 2, text);
    assert.equal(value(text, `steward_messages_retried_total${out}`), 1, text);
    assert.equal(value(text, `steward_messages_acked_total${out}`), undefined, text);
  });

  test("only GET /metrics is served", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${centralProm}/`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${centralProm}/metrics`, { method: "POST" })).status, 405);
  });
});

describe("exposeDataFolder", () => {
  const base = () => `http://127.0.0.1:${dataPort}`;

  test("serves a result file written by a reply, and lists folders", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "seen-through-the-view"],
      directory: "observed",
      fileName: "out.txt",
    });
    assert.equal((await fleet.waitState("central", id as string)).state, "done");

    const file = await fetch(`${base()}/observed/ship1/out.txt`);
    assert.equal(file.status, 200);
    assert.match(file.headers.get("content-type") ?? "", /^text\/plain/);
    assert.match(await file.text(), /seen-through-the-view/);

    const listing = await fetch(`${base()}/observed/`);
    assert.equal(listing.status, 200);
    assert.match(await listing.text(), /<a href="ship1\/">ship1\/<\/a>/);
    const rootListing = await (await fetch(`${base()}/`)).text();
    assert.match(rootListing, /href="observed\/"/);
    const redirect = await raw(dataPort, "/observed");
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, "/observed/");
    assert.equal((await fetch(`${base()}/observed/ship1/no-such-file`)).status, 404);
  });

  test("refuses every path out of the folder, and every verb but GET and HEAD", async () => {
    const data = fleet.node("central").dataFolder;
    symlinkSync("/etc", join(data, "etc-link"));
    writeFileSync(join(data, "inside.txt"), "inside\n");
    symlinkSync(join(data, "inside.txt"), join(data, "inside-link"));

    for (const path of [
      "/../../etc/passwd",
      "/%2e%2e/%2e%2e/etc/passwd",
      "%2e%2e/%2e%2e/etc/passwd",
      "/observed/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
      "/..%2f..%2f..%2f..%2fetc%2fpasswd",
      "/etc-link/passwd",
      "/etc-link/",
    ]) {
      const res = await raw(dataPort, path);
      assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`);
      assert.doesNotMatch(res.body, /root:/, path);
    }
    assert.equal((await raw(dataPort, "/../../etc/passwd")).status, 403);
    assert.equal((await raw(dataPort, "/etc-link/passwd")).status, 403);
    // A symlink that stays inside is fine; absolute-looking paths stay inside too.
    assert.equal((await raw(dataPort, "/inside-link")).body, "inside\n");
    assert.equal((await raw(dataPort, "//etc/passwd")).status, 404);

    assert.equal((await raw(dataPort, "/inside.txt", "POST")).status, 405);
    assert.equal((await raw(dataPort, "/inside.txt", "DELETE")).status, 405);
    assert.equal((await raw(dataPort, "/inside.txt", "PUT")).status, 405);
    const head = await raw(dataPort, "/inside.txt", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
  });
});

describe("audit log", () => {
  test("has an accepted line that re-creates the message, and an executed line on the receiver", async () => {
    const msg = { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "audited"], replyMethod: "none" };
    const [id] = await fleet.sendOk("central", msg);
    const centralLog = join(fleet.node("central").opts.dir, "var", "log", "audit.log");
    const ship1Log = join(fleet.node("ship1").opts.dir, "var", "log", "audit.log");

    const accepted = auditLines(centralLog).find((l) => l.event === "accepted" && l.message?.id === id);
    assert.ok(accepted?.message, readFileSync(centralLog, "utf8"));
    assert.ok(!Number.isNaN(Date.parse(accepted.time)));
    const logged = accepted.message;
    assert.equal(logged.toNode, msg.toNode);
    assert.equal(logged.method, msg.method);
    assert.deepEqual(logged.methodArgs, msg.methodArgs);
    assert.equal(logged.fromNode, "central");

    let executed: AuditLine | undefined;
    await sleepUntil(() => {
      executed = existsSync(ship1Log)
        ? auditLines(ship1Log).find((l) => l.event === "executed" && l.id === id)
        : undefined;
      return executed !== undefined;
    });
    assert.equal(executed?.fromNode, "central");
    assert.equal(executed?.method, "cliCommand");
    assert.equal(executed?.exitCode, 0);
    assert.equal(typeof executed?.durationMs, "number");
    assert.equal(executed?.error, undefined);

    // Handing the logged message in again (without its id and the envelope's own fields) runs it again.
    const { id: _id, fromNode: _from, attempt: _attempt, deliverBy: _deliverBy, ...again } = logged;
    const [id2] = await fleet.sendOk("central", { ...again, replyMethod: "fileAppend" });
    assert.notEqual(id2, id);
    const m = await fleet.waitState("central", id2 as string);
    assert.equal(m.state, "done");
    assert.equal(m.result?.data, "audited\n");
  });

  test("is rotated by size (auditLogMaxBytes), keeping whole JSON lines", async () => {
    const folder = join(fleet.dir, "ship2-audit");
    await fleet.add("ship2", { auditLogFolder: folder, auditLogMaxBytes: 2000 });
    const doc = Array.from({ length: 10 }, (_, i) => ({
      toNode: "ship1",
      method: "ping",
      methodArgs: [`${i}-${"x".repeat(100)}`],
    }));
    const ids = await fleet.sendOk("ship2", doc);
    const log = join(folder, "audit.log");
    assert.ok(existsSync(`${log}.1`), "audit.log.1 exists");
    const files = [5, 4, 3, 2, 1].map((n) => `${log}.${n}`).filter((f) => existsSync(f));
    for (const f of files) assert.ok(readFileSync(f).length <= 2000, f);
    const lines = [...files, log].flatMap(auditLines);
    assert.ok(readFileSync(log).length <= 2000);
    // Everything is still there, across the two files, in order.
    assert.deepEqual(
      lines.filter((l) => l.event === "accepted").map((l) => l.message?.id),
      ids,
    );
  });
});
