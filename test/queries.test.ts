/**
 * The node's queries (src/inputs/queries.ts) asked over its unix socket with
 * the typed client: status, list, wait, nodes and health, and how a query the
 * node cannot answer is refused — in words that name what was wrong.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { query, submit, waitQuery } from "../src/client/client.js";
import { NodeQueryError } from "../src/errors.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { parseQueryLine, QUERY_PREFIX, type QueryArgs, queryLine, type QueryName } from "../src/inputs/queries.js";
import { rawExchange } from "./helpers/cli-helpers.js";

let fleet: Fleet;
const sock = () => fleet.node("central").socketPath;

before(async () => {
  fleet = await Fleet.start("queries", ["central", "ship1", "ship2"]);
});
after(() => fleet.close());

/** Hand a document to central; every message must be accepted. */
async function accept(doc: unknown): Promise<string[]> {
  return (await submit(sock(), JSON.stringify(doc))).map((a) => {
    assert.ok(a.ok, `not accepted: ${JSON.stringify(a)}`);
    return a.id;
  });
}

describe("the socket line", () => {
  test("each query's line reads back as the same query and arguments", () => {
    const asked: { [Q in QueryName]: QueryArgs<Q> } = {
      status: { id: "01ABC" },
      list: { limit: 7, filter: { to: ["ship1"], states: ["queued", "sent"], methods: ["echo"], since: 1000 } },
      changes: { limit: 9, after: { updatedAt: "2026-11-29T08:00:00.000Z", id: "01ABC" }, filter: { to: ["ship2"] } },
      wait: { ms: 1500, ids: ["a", "b@ship1"] },
      nodes: {},
      health: {},
      cancel: { ids: [], toNode: "ship1", states: ["queued", "sent"], by: "alice" },
      keys: {},
      approve: { node: "ship1", groups: ["ops"], labels: { site: "north" } },
      revoke: { node: "ship1" },
      acl: {},
      setAcl: { acl: { rules: [{ from: ["central"], methods: ["*"], to: ["*"] }] } },
    };
    for (const [name, args] of Object.entries(asked)) {
      const line = queryLine(name as QueryName, args as never);
      assert.ok(line.startsWith(QUERY_PREFIX) && line.endsWith("\n"), line);
      assert.deepEqual(parseQueryLine(line.slice(QUERY_PREFIX.length)), { name, args }, line);
    }
  });

  test("an unknown query and a wait without ids are refused, saying what to ask", async () => {
    const refusal = async (line: string) =>
      (JSON.parse((await rawExchange(sock(), `${QUERY_PREFIX}${line}\n`)).text) as { error: string }).error;
    assert.equal(
      await refusal("bogus"),
      'unknown query "bogus"; use status ID, list [LIMIT] [FILTER], changes LIMIT JSON, wait MS ID..., nodes, health, cancel, keys, approve, revoke, acl or setAcl',
    );
    assert.match(await refusal("wait soon"), /^wait needs MS ID\.\.\./);
    assert.match(await refusal("wait 100"), /^wait needs MS ID\.\.\./);
  });
});

describe("status and list", () => {
  test("status of a message: its state and, once done, its result; list shows it too", async () => {
    const [id] = await accept({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "asked"] });
    await sleepUntil(async () => (await query(sock(), "status", { id: id as string })).message.state === "done");
    const { message } = await query(sock(), "status", { id: id as string });
    assert.equal(message.id, id);
    assert.equal(message.toNode, "ship1");
    assert.equal(message.method, "cliCommand");
    assert.equal(message.exitCode, 0);
    assert.equal(message.result?.data, "asked\n");
    const { messages } = await query(sock(), "list", { limit: 100 });
    const listed = messages.find((m) => m.id === id);
    assert.equal(listed?.state, "done");
    assert.equal(listed?.result, undefined, "list leaves the results out");
    assert.equal((await query(sock(), "list", { limit: 1 })).messages.length, 1);
  });

  test("status of an unknown id: a NodeQueryError that names the id and the node", async () => {
    await assert.rejects(query(sock(), "status", { id: "never-sent-here" }), (err: unknown) => {
      assert.ok(err instanceof NodeQueryError, String(err));
      assert.equal(err.message, "no message with id never-sent-here was sent from central");
      return true;
    });
  });
});

describe("nodes and health", () => {
  test("nodes: this node, its central, and the nodes whose hellos arrived", async () => {
    await sleepUntil(async () => {
      const { nodes } = await query(sock(), "nodes", {});
      return ["ship1", "ship2"].every((name) => nodes.some((n) => n.name === name && n.lastSeen !== null));
    });
    const answer = await query(sock(), "nodes", {});
    assert.equal(answer.node, "central");
    assert.equal(answer.central, "central");
  });

  test("health: this node, running, its broker link up", async () => {
    const h = await query(sock(), "health", {});
    assert.equal(h.node, "central");
    assert.equal(h.lifecycle, "running");
    assert.equal(h.broker, "up");
    assert.equal(h.brokerAddress, fleet.broker.url);
    assert.equal(typeof h.inFlight, "number");
  });
});

describe("wait (what `steward send --wait` uses instead of polling)", () => {
  test("answers with the results once every message is final, long before its limit", async () => {
    const ids = await accept({
      toNodes: ["ship1", "ship2"],
      method: "cliCommand",
      methodArgs: ["bash", "-c", "sleep 0.5; echo waited"],
    });
    const t0 = Date.now();
    const views = await waitQuery(sock(), ids, 30_000);
    const took = Date.now() - t0;
    assert.deepEqual(
      views.map((v) => v.state),
      ["done", "done"],
    );
    assert.deepEqual(
      views.map((v) => v.result?.data?.trim()),
      ["waited", "waited"],
    );
    // Not a speed test: a node that only answered at its limit would take 30 s.
    assert.ok(took < 25_000, `answered after ${took} ms`);
  });

  test("answers after its limit with the states as they are when a message is not final", async () => {
    const [id] = await accept({
      toNode: "nosuchnode",
      method: "cliCommand",
      methodArgs: ["true"],
      ACKTimeout: 5,
      retries: 3,
    });
    const views = await waitQuery(sock(), [id as string], 300);
    assert.equal(views.length, 1);
    assert.ok(["queued", "sent"].includes(views[0]?.state ?? ""), `state ${views[0]?.state}`);
  });

  test("an id the node never sent: an error that names it", async () => {
    await assert.rejects(waitQuery(sock(), ["never-sent-here"], 100), /no message with id never-sent-here/);
  });
});
