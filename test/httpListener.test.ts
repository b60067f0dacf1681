/**
 * The HTTP listener (`httpListener` host:port): POST /messages answers per
 * message and what it accepts is delivered; GET /messages, /messages/:id,
 * /nodes and /health answer the node's queries; every request carries the
 * token. (Refusals: test/localInputs.test.ts.)
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { listenerToken } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";

let fleet: Fleet;
let httpPort: number;
let token: string;

/** fetch with the listener's token. */
function authed(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { authorization: `Bearer ${token}`, ...init.headers } });
}

before(async () => {
  fleet = await Fleet.start("httpListener", ["ship1"]);
  httpPort = await freePort();
  await fleet.add("central", { httpListener: `:${httpPort}` });
  token = listenerToken(fleet.node("central").configFolder);
});
after(() => fleet.close());

describe("httpListener", () => {
  const base = () => `http://127.0.0.1:${httpPort}`;

  test("POST /messages accepts JSON, GET /messages/:id shows state and result", async () => {
    const res = await authed(`${base()}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "over-http"] }),
    });
    assert.equal(res.status, 200);
    const { results } = (await res.json()) as { results: { ok: boolean; id: string }[] };
    assert.equal(results.length, 1);
    const id = results[0]?.id as string;
    let state = "";
    await sleepUntil(async () => {
      const r = await authed(`${base()}/messages/${id}`);
      const body = (await r.json()) as { message: { state: string; result?: { data?: string } } };
      state = body.message.state;
      return state === "done" && body.message.result?.data === "over-http\n";
    });
    assert.equal(state, "done");
    const list = (await (await authed(`${base()}/messages?limit=100`)).json()) as { messages: { id: string }[] };
    assert.ok(
      list.messages.some((m) => m.id === id),
      `GET /messages lists ${id}: ${JSON.stringify(list)}`,
    );
  });

  test("GET /health names this node and its broker link", async () => {
    const body = (await (await authed(`${base()}/health`)).json()) as {
      node: string;
      lifecycle: string;
      broker: string;
    };
    assert.equal(body.node, "central");
    assert.equal(body.lifecycle, "running");
    assert.equal(body.broker, "up");
  });

  test("POST /messages with YAML and a bad message: 422, the good one still accepted", async () => {
    const yaml = "- toNode: ship1\n  method: ping\n- toNode: bad.name\n  method: ping\n";
    const res = await authed(`${base()}/messages`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: yaml,
    });
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
      const body = (await (await authed(`${base()}/nodes`)).json()) as {
        nodes: { name: string; lastSeen: number | null }[];
      };
      return body.nodes.some((n) => n.name === "ship1" && n.lastSeen !== null);
    });
    assert.equal((await authed(`${base()}/messages/NO-SUCH-ID`)).status, 404);
    assert.equal((await authed(`${base()}/nowhere`)).status, 404);
    assert.equal((await authed(`${base()}/nodes`, { method: "DELETE" })).status, 405);
  });
});
