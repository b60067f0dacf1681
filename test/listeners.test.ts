/**
 * The TCP and HTTP listeners and the startup folder: each answers per
 * message (accepted id, or the error), and what it accepts is delivered.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { parseAnswerLine } from "../src/inputs/protocol.js";

let fleet: Fleet;
let tcpPort: number;
let httpPort: number;

function tcpSend(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(port, "127.0.0.1");
    let out = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.end(text));
    c.on("data", (d: string) => {
      out += d;
    });
    c.on("end", () => resolve(out));
    c.on("error", reject);
  });
}

before(async () => {
  fleet = await Fleet.start("listeners", ["ship1"]);
  tcpPort = await freePort();
  httpPort = await freePort();
  // Central gets a startup folder with one message in it before its first start.
  const startup = join(fleet.dir, "central", "startup");
  mkdirSync(startup, { recursive: true });
  writeFileSync(
    join(startup, "uptime.json"),
    JSON.stringify({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "at-start"] }),
  );
  await fleet.add("central", { tcpListener: `127.0.0.1:${tcpPort}`, httpListener: `:${httpPort}` });
});
after(() => fleet.close());

describe("tcpListener", () => {
  test("answers one line per message and delivers the accepted ones", async () => {
    const doc = JSON.stringify([
      { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "over-tcp"] },
      { toNode: "ship1", method: "noSuchMethod" },
    ]);
    const lines = (await tcpSend(tcpPort, doc)).trim().split("\n");
    assert.equal(lines.length, 2, lines.join("\n"));
    const [ok, bad] = lines.map(parseAnswerLine);
    assert.ok(ok?.ok, lines[0]);
    assert.ok(bad && !bad.ok && /message 1, field "method"/.test(bad.error), lines[1]);
    const m = await fleet.waitState("central", ok.ok ? ok.id : "");
    assert.equal(m.state, "done");
    assert.equal(m.result?.data, "over-tcp\n");
  });

  test("does not answer the CLI's status queries (those stay on the local socket)", async () => {
    const out = await tcpSend(tcpPort, "STEWARD/1 health\n");
    assert.match(out, /^error /);
  });
});

describe("httpListener", () => {
  const base = () => `http://127.0.0.1:${httpPort}`;

  test("POST /messages accepts JSON, GET /messages/:id shows state and result", async () => {
    const res = await fetch(`${base()}/messages`, {
      method: "POST",
      body: JSON.stringify({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "over-http"] }),
    });
    assert.equal(res.status, 200);
    const { results } = (await res.json()) as { results: { ok: boolean; id: string }[] };
    assert.equal(results.length, 1);
    const id = results[0]?.id as string;
    let state = "";
    await sleepUntil(async () => {
      const r = await fetch(`${base()}/messages/${id}`);
      const body = (await r.json()) as { message: { state: string; result?: { data?: string } } };
      state = body.message.state;
      return state === "done" && body.message.result?.data === "over-http\n";
    });
    assert.equal(state, "done");
  });

  test("POST /messages with YAML and a bad message: 422, the good one still accepted", async () => {
    const yaml = "- toNode: ship1\n  method: ping\n- toNode: bad.name\n  method: ping\n";
    const res = await fetch(`${base()}/messages`, { method: "POST", body: yaml });
    assert.equal(res.status, 422);
    const { results } = (await res.json()) as { results: ({ ok: true; id: string } | { ok: false; error: string })[] };
    assert.equal(results[0]?.ok, true);
    assert.equal(results[1]?.ok, false);
    assert.match((results[1] as { error: string }).error, /message 1, field "toNode"/);
    const m = await fleet.waitState("central", (results[0] as { id: string }).id);
    assert.equal(m.state, "done");
  });

  test("GET /nodes lists the nodes, unknown ids and paths are 404, other verbs 405", async () => {
    await sleepUntil(async () => {
      const body = (await (await fetch(`${base()}/nodes`)).json()) as {
        nodes: { name: string; lastSeen: number | null }[];
      };
      return body.nodes.some((n) => n.name === "ship1" && n.lastSeen !== null);
    });
    assert.equal((await fetch(`${base()}/messages/NO-SUCH-ID`)).status, 404);
    assert.equal((await fetch(`${base()}/nowhere`)).status, 404);
    assert.equal((await fetch(`${base()}/nodes`, { method: "DELETE" })).status, 405);
  });
});

describe("startup folder", () => {
  test("its messages are handed in at start and delivered", async () => {
    const http = `http://127.0.0.1:${httpPort}`;
    let found: { id: string; state: string } | undefined;
    await sleepUntil(async () => {
      const { messages } = (await (await fetch(`${http}/messages?limit=100`)).json()) as {
        messages: { id: string; state: string; method: string }[];
      };
      const ids = messages.filter((m) => m.method === "cliCommand").map((m) => m.id);
      for (const id of ids) {
        const { message } = (await (await fetch(`${http}/messages/${id}`)).json()) as {
          message: { id: string; state: string; result?: { data?: string } };
        };
        if (message.result?.data === "at-start\n") found = message;
      }
      return found?.state === "done";
    });
    assert.equal(found?.state, "done");
  });
});
