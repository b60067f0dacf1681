/**
 * Labels and groups: the labels a node announces (its `labels` setting) and
 * those the operator sets on central, merged in central's bundle with the
 * operator's winning; `toLabels` / `steward send --to-label` selecting targets
 * by them; `steward nodes --label`; and the rules' `label:` targets and
 * command groups, as a fleet of real nodes enforces them.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { query } from "../src/client/client.js";
import { ConfigError, MessageInputError } from "../src/errors.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { hasLabels, parseLabelList } from "../src/message/labels.js";
import { parseMessages, toMessages } from "../src/message/parse.js";
import { loadConfig } from "../src/node/config.js";
import { type Acl, aclProblem, allows, type Member } from "../src/security/acl.js";
import { runCli } from "./helpers/cli-helpers.js";
import { sendQuick, show, stewardOn, waitBundle } from "./helpers/trust-helpers.js";

const defaults = { ACKTimeout: 5, retries: 1, methodTimeout: 10 };

describe("labels as text", () => {
  test("role=web,site=oslo, given at once or pair by pair", () => {
    assert.deepEqual(parseLabelList("role=web,site=oslo"), { role: "web", site: "oslo" });
    assert.deepEqual(parseLabelList(["role=web", "site=oslo"]), { role: "web", site: "oslo" });
    assert.deepEqual(parseLabelList(""), {});
    assert.ok(hasLabels({ role: "web", site: "oslo" }, { role: "web" }));
    assert.ok(!hasLabels({ role: "web" }, { role: "web", site: "oslo" }));
  });

  test("a bad pair is refused, naming it", () => {
    assert.throws(() => parseLabelList("role"), /"role" should be KEY=VALUE/);
    assert.throws(() => parseLabelList("role=we b"), /label role: value "we b": use 1 to 63 letters, digits/);
    assert.throws(() => parseLabelList("ro.le=web"), /label key "ro.le"/);
    assert.throws(() => parseLabelList("role=web,role=db"), /label role given twice, as web and db/);
  });

  test("the labels setting is checked at start, with the setting named", () => {
    const folder = mkdtempSync(join(tmpdir(), "steward-labels-config-"));
    try {
      const env = { CONFIG_FOLDER: folder };
      assert.equal(loadConfig({ labels: "role=web,site=oslo" }, { env }).labels, "role=web,site=oslo");
      assert.throws(
        () => loadConfig({ labels: "role=web,site" }, { env }),
        (err) =>
          err instanceof ConfigError &&
          err.setting === "labels" &&
          err.message === 'setting labels: "site" should be KEY=VALUE (labels look like role=web,site=oslo)',
      );
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe("toLabels", () => {
  const fleetLabels: Record<string, Record<string, string>> = {
    central: {},
    web1: { role: "web", site: "oslo" },
    web2: { role: "web", site: "bergen" },
    db1: { role: "db", site: "oslo" },
  };
  const lookup = {
    nodesWithLabels: (wanted: Record<string, string>) =>
      Object.keys(fleetLabels).filter((n) => hasLabels(fleetLabels[n] ?? {}, wanted)),
  };

  test("one message per node carrying every label, each with its own id", () => {
    const messages = toMessages(
      { toLabels: { role: "web" }, method: "cliCommand", methodArgs: ["uptime"] },
      0,
      defaults,
      lookup,
    );
    assert.deepEqual(
      messages.map((m) => m.toNode),
      ["web1", "web2"],
    );
    assert.equal(new Set(messages.map((m) => m.id)).size, 2);
    const both = toMessages({ toLabels: { role: "web", site: "oslo" }, method: "ping" }, 0, defaults, lookup);
    assert.deepEqual(
      both.map((m) => m.toNode),
      ["web1"],
    );
  });

  test("beside toNode and toNodes: the union, each node once; a given id gets @node", () => {
    const messages = toMessages(
      { id: "roll-1", toNode: "db1", toNodes: ["web2"], toLabels: { site: "oslo" }, method: "ping" },
      0,
      defaults,
      lookup,
    );
    assert.deepEqual(
      messages.map((m) => [m.toNode, m.id]),
      [
        ["db1", "roll-1@db1"],
        ["web2", "roll-1@web2"],
        ["web1", "roll-1@web1"],
      ],
    );
  });

  test("no node matches, bad labels, or an input that cannot look them up: an input error naming toLabels", () => {
    const refused = (raw: unknown, reason: RegExp, withLookup = true) => {
      const [outcome] = parseMessages(JSON.stringify(raw), defaults, withLookup ? lookup : {});
      assert.ok(outcome && "error" in outcome, JSON.stringify(outcome));
      assert.ok(outcome.error instanceof MessageInputError);
      assert.equal(outcome.error.field, "toLabels");
      assert.match(outcome.error.message, reason);
    };
    refused({ toLabels: { role: "cache" }, method: "ping" }, /no admitted node has labels role=cache/);
    refused(
      { toLabels: { role: "web", site: "paris" }, method: "ping" },
      /no admitted node has labels role=web,site=paris/,
    );
    refused({ toLabels: {}, method: "ping" }, /give at least one label/);
    refused({ toLabels: ["role=web"], method: "ping" }, /expected an object of labels/);
    refused({ toLabels: { role: 1 }, method: "ping" }, /label role: expected a string value/);
    refused({ toLabels: { role: "web" }, method: "ping" }, /cannot select nodes by label/, false);
  });
});

describe("command groups in the rules", () => {
  const central: Member = { name: "central", groups: [], labels: {} };
  const web: Member = { name: "web1", groups: [], labels: { role: "web" } };
  const acl: Acl = {
    commandGroups: { info: [["uname", "-[a-z]"], ["hostname"]] },
    rules: [{ from: ["central"], methods: ["cliCommand"], to: ["*"], args: [["echo", "[a-z]+"], "group:info"] }],
  };

  test("a rule's args may name a group: each of its command lines is allowed, nothing more", () => {
    assert.equal(aclProblem(acl), undefined);
    assert.ok(allows(acl, central, "cliCommand", web, ["uname", "-a"]));
    assert.ok(allows(acl, central, "cliCommand", web, ["hostname"]));
    assert.ok(allows(acl, central, "cliCommand", web, ["echo", "hi"]));
    assert.ok(!allows(acl, central, "cliCommand", web, ["uname", "-a", "-r"]));
    assert.ok(!allows(acl, central, "cliCommand", web, ["id"]));
  });

  test("badly formed groups and rules are refused, naming the place", () => {
    const rule = acl.rules[0] as Acl["rules"][number];
    assert.equal(
      aclProblem({ ...acl, rules: [{ ...rule, args: ["group:disk"] }] }),
      'rules[0].args: "group:disk" names no group of commandGroups',
    );
    assert.equal(
      aclProblem({ ...acl, commandGroups: { info: [] } }),
      "commandGroups.info: expected a non-empty array of command lines, each an array of patterns",
    );
    assert.match(aclProblem({ ...acl, commandGroups: { info: [["("]] } }) ?? "", /^commandGroups\.info: Invalid/);
    assert.equal(
      aclProblem({ ...acl, commands: {} }),
      'unknown field "commands"; a rule set has rules and optional commandGroups',
    );
  });

  test("a caller is never named by a label: a node announces its own", () => {
    assert.match(
      aclProblem({ rules: [{ from: ["label:role=admin"], methods: ["ping"], to: ["*"] }] }) ?? "",
      /^rules\[0\]\.from: "label:role=admin": a caller is named by node or group:NAME, never by a label/,
    );
  });
});

describe("labels in a fleet", () => {
  let fleet: Fleet;
  const all = ["web1", "db1", "mis1"];
  const nodesWith = async (label: string[]) => {
    const r = await stewardOn(fleet, "central", ["nodes", ...label.flatMap((l) => ["--label", l])]);
    assert.equal(r.code, 0, show(r));
    return r.stdout;
  };
  const namesIn = (table: string) =>
    table
      .split("\n")
      .slice(1)
      .map((l) => l.split(/\s+/)[0])
      .filter(Boolean);

  before(async () => {
    // Central's own labels come from its setting too (nodes added below have their own settings).
    fleet = await Fleet.start("labels", ["central"], { labels: "role=hub" });
    await fleet.add("web1", { labels: "role=web,site=oslo" });
    await fleet.add("db1", { labels: "role=db,site=oslo" });
    // Announces role=web; the operator says it is a db (test "the operator's labels win").
    await fleet.add("mis1", { labels: "role=web" });
    await waitBundle(fleet, all);
  });
  after(() => fleet?.close());

  test("steward nodes --label role=web lists only the web node, with its labels", async () => {
    const web = await nodesWith(["role=web"]);
    assert.deepEqual(namesIn(web).sort(), ["mis1", "web1"], web);
    assert.match(web, /^web1 .* role=web,site=oslo$/m);
    const oslo = await nodesWith(["role=db", "site=oslo"]);
    assert.deepEqual(namesIn(oslo), ["db1"], oslo);
    assert.deepEqual(namesIn(await nodesWith(["role=hub"])), ["central"]);
    const none = await nodesWith(["role=cache"]);
    assert.equal(none, "no admitted node has labels role=cache\n");
    const { nodes } = await query(fleet.node("central").socketPath, "nodes", {});
    assert.deepEqual(nodes.find((n) => n.name === "db1")?.labels, { role: "db", site: "oslo" });
  });

  test("the operator's labels win over those a node announces for the same key", async () => {
    const r = await stewardOn(fleet, "central", ["keys", "approve", "mis1", "--labels", "role=db"]);
    assert.equal(r.code, 0, show(r));
    await waitBundle(fleet, all);
    assert.deepEqual(namesIn(await nodesWith(["role=web"])), ["web1"]);
    assert.deepEqual(namesIn(await nodesWith(["role=db"])), ["db1", "mis1"]);
    const keys = await stewardOn(fleet, "central", ["keys", "list"]);
    // Both are kept: what the operator set, and what the node announces.
    assert.match(keys.stdout, /^mis1 .* role=db +role=web /m, show(keys));
  });

  test("steward send --to-label role=web runs on the web node only, one result per node", async () => {
    // The socket folder before "--": what follows it is the command.
    const socketFolder = join(fleet.node("central").opts.dir, "tmp");
    const r = await runCli(
      ["send", "--socket-folder", socketFolder, "--to-label", "role=web", "--wait", "--", "echo", "hi"],
      { cwd: fleet.dir },
    );
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^== web1 \(.+\): done \(exit 0\)\nhi$/m, show(r));
    assert.doesNotMatch(r.stdout, /== (db1|mis1)/, show(r));

    // As a document: toLabels beside toNode, each node once.
    const ids = await fleet.sendOk("central", {
      toNode: "db1",
      toLabels: { site: "oslo" },
      method: "cliCommand",
      methodArgs: ["echo", "oslo"],
    });
    assert.equal(ids.length, 2);
    const done = await Promise.all(ids.map((id) => fleet.waitState("central", id)));
    assert.deepEqual(done.map((m) => [m.toNode, m.state, m.result?.data]).sort(), [
      ["db1", "done", "oslo\n"],
      ["web1", "done", "oslo\n"],
    ]);

    // Central is a target like any other when it carries the labels.
    const [hub] = await fleet.sendOk("web1", { toLabels: { role: "hub" }, method: "ping" });
    const ping = await fleet.waitState("web1", hub as string);
    assert.deepEqual([ping.toNode, ping.state], ["central", "done"], JSON.stringify(ping));

    const none = await fleet.send("central", { toLabels: { role: "cache" }, method: "ping" });
    assert.deepEqual(none, [
      {
        ok: false,
        index: 0,
        error:
          'message 0, field "toLabels": no admitted node has labels role=cache (see "steward nodes --label KEY=VALUE")',
      },
    ]);
  });

  test("a node that announces new labels: a new bundle carries them to every node", async () => {
    const before = (await query(fleet.node("central").socketPath, "keys", {})).bundle;
    const db1 = fleet.node("db1");
    await db1.stop();
    (db1.opts.settings as Record<string, string | number>).labels = "role=db,site=oslo,tier=2";
    await db1.start();
    await sleepUntil(async () => namesIn(await nodesWith(["tier=2"])).includes("db1"), {
      what: "central to see db1's new label",
    });
    const version = await waitBundle(fleet, all);
    assert.ok(version > before, `bundle ${version} after ${before}`);
    // web1 selects by it from its own bundle.
    const { nodes } = await query(fleet.node("web1").socketPath, "nodes", { labels: { tier: "2" } });
    assert.deepEqual(
      nodes.map((n) => n.name),
      ["db1"],
    );
  });

  test("rules: label:role=web lets central run commands on web nodes only; a command group names the commands", async () => {
    const rules: Acl = {
      commandGroups: { info: [["uname", "-[a-z]"], ["hostname"]] },
      rules: [
        { from: ["*"], methods: ["hello", "errorLog", "ping"], to: ["*"] },
        {
          from: ["central"],
          methods: ["cliCommand"],
          to: ["label:role=web"],
          args: [["echo", "[a-z]+"], "group:info"],
        },
      ],
    };
    const file = join(fleet.dir, "rules.json");
    writeFileSync(file, JSON.stringify(rules));
    const set = await stewardOn(fleet, "central", ["acl", "set", file]);
    assert.equal(set.code, 0, show(set));
    await waitBundle(fleet, all);
    const shown = await stewardOn(fleet, "central", ["acl", "show"]);
    assert.match(shown.stdout, /^ {3}only: echo \[a-z\]\+ \| group:info$/m, show(shown));
    assert.match(shown.stdout, /^group:info = uname -\[a-z\] \| hostname$/m, show(shown));

    const run = (to: string, args: string[]) => sendQuick(fleet, "central", to, "cliCommand", args, { retries: 5 });
    const [echoWeb, unameWeb, echoDb, echoMis, idWeb, unameTwoWeb] = await Promise.all([
      run("web1", ["echo", "hello"]),
      run("web1", ["uname", "-s"]),
      run("db1", ["echo", "hello"]),
      // mis1 announces role=web, but the operator made it a db.
      run("mis1", ["echo", "hello"]),
      run("web1", ["id"]),
      run("web1", ["uname", "-s", "-r"]),
    ]);
    for (const id of [echoWeb, unameWeb]) {
      const m = await fleet.waitState("central", id);
      assert.equal(m.state, "done", JSON.stringify(m));
    }
    for (const [id, node] of [
      [echoDb, "db1"],
      [echoMis, "mis1"],
      [idWeb, "web1"],
      [unameTwoWeb, "web1"],
    ] as const) {
      const m = await fleet.waitState("central", id);
      assert.equal(m.state, "failed", JSON.stringify(m));
      assert.equal(m.reason, `not allowed: central may not call cliCommand on ${node}`);
    }
  });
});
