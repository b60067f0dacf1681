/**
 * Authorization: the rules of src/security/acl.ts and the signed frames of
 * src/security/frame.ts on their own, then the rules as a fleet of real
 * nodes enforces them — the defaults of a fresh install, a rule set given
 * with `steward acl set`, the refusal each sender's message ends with, and
 * the audit log of the node that refused.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { methodSubject } from "../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import {
  type Acl,
  aclProblem,
  allows,
  allowsNoTimeLimit,
  defaultAcl,
  type Member,
  type Rule,
} from "../src/security/acl.js";
import { open, readHeader, seal } from "../src/security/frame.js";
import { parsePublicKey } from "../src/security/identity.js";
import { auditLines, bundleOf, makeIdentity, sendQuick, show, stewardOn, waitBundle } from "./helpers/trust-helpers.js";

const member = (name: string, groups: string[] = [], labels: Record<string, string> = {}): Member => ({
  name,
  groups,
  labels,
});
const central = member("central");
const ship1 = member("ship1", ["ops"], { site: "north", role: "web" });
const ship2 = member("ship2", [], { site: "south" });
const one = (rule: Rule): Acl => ({ rules: [rule] });

describe("allows", () => {
  test("the default rules: central calls everything; any node may say hello, report errors and ping", () => {
    const acl = defaultAcl("central");
    assert.equal(allows(acl, central, "cliCommand", ship1, ["rm", "-rf", "/"]), true);
    assert.equal(allows(acl, central, "opProcessStart", ship2, []), true);
    assert.equal(allows(acl, ship1, "cliCommand", ship2, ["echo"]), false);
    assert.equal(allows(acl, ship1, "tailFile", central, ["/etc/passwd"]), false);
    for (const m of ["hello", "errorLog", "ping"] as const) assert.equal(allows(acl, ship1, m, ship2, []), true, m);
  });

  test("from and to by name", () => {
    const acl = one({ from: ["ship1"], methods: ["ping"], to: ["ship2"] });
    assert.equal(allows(acl, ship1, "ping", ship2, []), true);
    assert.equal(allows(acl, ship2, "ping", ship2, []), false);
    assert.equal(allows(acl, ship1, "ping", central, []), false);
    assert.equal(allows(acl, ship1, "cliCommand", ship2, ["x"]), false);
  });

  test("group:NAME on either side", () => {
    const from = one({ from: ["group:ops"], methods: ["ping"], to: ["*"] });
    assert.equal(allows(from, ship1, "ping", ship2, []), true);
    assert.equal(allows(from, ship2, "ping", ship1, []), false);
    const to = one({ from: ["*"], methods: ["ping"], to: ["group:ops"] });
    assert.equal(allows(to, ship2, "ping", ship1, []), true);
    assert.equal(allows(to, ship1, "ping", ship2, []), false);
  });

  test("label:KEY=VALUE names the receiver by one of its labels; a value may hold '='", () => {
    const acl = one({ from: ["*"], methods: ["ping"], to: ["label:site=north"] });
    assert.equal(allows(acl, ship2, "ping", ship1, []), true);
    assert.equal(allows(acl, ship1, "ping", ship2, []), false, "site=south");
    assert.equal(allows(acl, ship1, "ping", central, []), false, "no labels");
    const eq = one({ from: ["*"], methods: ["ping"], to: ["label:k=a=b"] });
    assert.equal(allows(eq, ship1, "ping", member("x", [], { k: "a=b" }), []), true);
    assert.equal(allows(eq, ship1, "ping", member("x", [], { k: "a" }), []), false);
  });

  test('"self": a node may call the method on itself only', () => {
    const acl = one({ from: ["*"], methods: ["cliCommand"], to: ["self"] });
    assert.equal(allows(acl, ship1, "cliCommand", ship1, ["uptime"]), true);
    assert.equal(allows(acl, ship1, "cliCommand", ship2, ["uptime"]), false);
  });

  test('"*" for callers and methods', () => {
    const acl = one({ from: ["*"], methods: ["*"], to: ["ship2"] });
    assert.equal(allows(acl, ship1, "opProcessStop", ship2, []), true);
    assert.equal(allows(acl, member("anyone"), "httpGet", ship2, ["http://x"]), true);
    assert.equal(allows(acl, ship1, "httpGet", ship1, ["http://x"]), false);
  });

  test("a method may be named by its seed names (REQCliCommand, REQnCliCommand)", () => {
    for (const name of ["REQCliCommand", "REQnCliCommand", "cliCommand"]) {
      const acl = one({ from: ["ship1"], methods: [name], to: ["ship2"] });
      assert.equal(allows(acl, ship1, "cliCommand", ship2, ["uptime"]), true, name);
      assert.equal(allows(acl, ship1, "cliCommandCont", ship2, ["uptime"]), false, name);
    }
  });

  test("args: one regular expression per argument, matched whole, and as many as there are arguments", () => {
    const acl = one({
      from: ["ship1"],
      methods: ["cliCommand"],
      to: ["*"],
      args: [["echo", "[a-z]+"], ["uptime"], ["systemctl", "status|restart"]],
    });
    const ok = (args: string[]) => allows(acl, ship1, "cliCommand", ship2, args);
    assert.equal(ok(["echo", "hello"]), true);
    assert.equal(ok(["uptime"]), true);
    assert.equal(ok(["systemctl", "restart"]), true);
    assert.equal(ok(["echo", "HELLO"]), false);
    assert.equal(ok(["echo", "hello world"]), false, "a pattern matches the whole argument");
    assert.equal(ok(["echo", "xhellox!"]), false);
    assert.equal(ok(["systemctl", "restart-all"]), false, "an alternation is matched whole too");
    assert.equal(ok(["systemctl", "xstatus"]), false);
    assert.equal(ok(["echo"]), false, "fewer arguments than patterns");
    assert.equal(ok(["echo", "hello", "world"]), false, "more arguments than patterns");
    assert.equal(ok(["uptime", "-p"]), false);
    assert.equal(ok(["bash", "-c", "echo hello"]), false);
  });

  test('args: ["a b"] and ["a", "b"] are different command lines', () => {
    const joined = one({ from: ["*"], methods: ["cliCommand"], to: ["*"], args: [["a b"]] });
    const split = one({ from: ["*"], methods: ["cliCommand"], to: ["*"], args: [["a", "b"]] });
    assert.equal(allows(joined, ship1, "cliCommand", ship2, ["a b"]), true);
    assert.equal(allows(joined, ship1, "cliCommand", ship2, ["a", "b"]), false);
    assert.equal(allows(split, ship1, "cliCommand", ship2, ["a", "b"]), true);
    assert.equal(allows(split, ship1, "cliCommand", ship2, ["a b"]), false);
  });

  test("one matching rule is enough; no rule, nothing allowed", () => {
    const acl: Acl = {
      rules: [
        { from: ["ship2"], methods: ["ping"], to: ["*"] },
        { from: ["group:ops"], methods: ["cliCommand"], to: ["label:site=south"], args: [["uptime"]] },
      ],
    };
    assert.equal(allows(acl, ship1, "cliCommand", ship2, ["uptime"]), true);
    assert.equal(allows(acl, ship2, "ping", ship1, []), true);
    assert.equal(allows(acl, ship1, "ping", ship2, []), false);
    assert.equal(allows({ rules: [] }, central, "ping", ship1, []), false);
  });
});

describe("aclProblem", () => {
  const rule = (extra: Record<string, unknown>) => ({
    rules: [{ from: ["*"], methods: ["ping"], to: ["*"], ...extra }],
  });

  test("a good rule set, and the defaults, have no problem", () => {
    assert.equal(aclProblem(defaultAcl("central")), undefined);
    assert.equal(
      aclProblem({
        rules: [
          { from: ["group:ops"], methods: ["REQCliCommand"], to: ["label:site=north"], args: [["echo", "[a-z]+"]] },
          { from: ["*"], methods: ["*"], to: ["self"] },
        ],
      }),
      undefined,
    );
    assert.equal(aclProblem({ rules: [] }), undefined);
  });

  test("not a rule set", () => {
    for (const v of [null, 3, "rules", {}, { rules: {} }, []])
      assert.equal(aclProblem(v), 'expected {"rules": [...]}', JSON.stringify(v));
  });

  test("an unknown method is named, with its rule", () => {
    const p = aclProblem({
      rules: [
        { from: ["*"], methods: ["ping"], to: ["*"] },
        { from: ["*"], methods: ["cliComand"], to: ["*"] },
      ],
    });
    assert.equal(p, 'rules[1].methods: unknown method "cliComand"');
  });

  test("args on a method that is not a command", () => {
    assert.equal(
      aclProblem(rule({ args: [["x"]] })),
      "rules[0].args: argument patterns apply to cliCommand and cliCommandCont only",
    );
    const mixed = { rules: [{ from: ["*"], methods: ["cliCommand", "tailFile"], to: ["*"], args: [["x"]] }] };
    assert.match(aclProblem(mixed) ?? "", /^rules\[0\]\.args: /);
  });

  test("a pattern that is no regular expression", () => {
    const p = aclProblem({ rules: [{ from: ["*"], methods: ["cliCommand"], to: ["*"], args: [["echo", "[a-z"]] }] });
    assert.match(p ?? "", /^rules\[0\]\.args: .*Invalid regular expression/);
  });

  test("an unknown field is named (a typo must not widen or void a rule silently)", () => {
    assert.equal(
      aclProblem(rule({ arg: [["x"]] })),
      'rules[0]: unknown field "arg"; a rule has from, methods, to and optional args and unlimited',
    );
  });

  test("unlimited is true or false, and grants no time limit only with what its rule allows", () => {
    assert.equal(aclProblem(rule({ unlimited: "yes" })), "rules[0].unlimited: expected true or false");
    const acl: Acl = {
      rules: [
        { from: ["group:ops"], methods: ["tailFile"], to: ["*"], unlimited: true },
        { from: ["*"], methods: ["cliCommand"], to: ["*"] },
      ],
    };
    assert.equal(aclProblem(acl), undefined);
    assert.equal(allowsNoTimeLimit(acl, ship1, "tailFile", ship2, ["/var/log/syslog"]), true);
    assert.equal(allowsNoTimeLimit(acl, ship1, "cliCommand", ship2, ["true"]), false, "allowed, but with a limit");
    assert.equal(allowsNoTimeLimit(acl, ship2, "tailFile", ship1, ["/var/log/syslog"]), false, "not in group ops");
  });

  test("empty or missing from/methods/to, bad labels, bad args shapes", () => {
    assert.equal(aclProblem(rule({ from: [] })), "rules[0].from: expected a non-empty array of names");
    assert.equal(aclProblem(rule({ to: [""] })), "rules[0].to: expected a non-empty array of names");
    assert.equal(
      aclProblem({ rules: [{ from: ["*"], to: ["*"] }] }),
      "rules[0].methods: expected a non-empty array of names",
    );
    assert.equal(aclProblem(rule({ to: ["label:site"] })), 'rules[0].to: "label:site" should be label:KEY=VALUE');
    assert.match(
      aclProblem({ rules: [{ from: ["*"], methods: ["cliCommand"], to: ["*"], args: ["echo"] }] }) ?? "",
      /^rules\[0\]\.args: expected/,
    );
    assert.equal(aclProblem({ rules: [null] }), "rules[0]: expected an object with from, methods and to");
  });
});

describe("signed frames", () => {
  const alice = makeIdentity("alice");
  const mallory = makeIdentity("mallory");
  const aliceKey = parsePublicKey(alice.publicKey);
  const keyOf = (name: string) =>
    name === "alice" ? aliceKey : name === "mallory" ? parsePublicKey(mallory.publicKey) : undefined;
  const subject = methodSubject("ship1", "cliCommand", "alice");
  const body = Buffer.from(JSON.stringify({ id: "m1", methodArgs: ["echo", "hello"] }));

  test("seal, then open: the same signer and body", () => {
    const frame = seal(alice, subject, body);
    assert.match(Buffer.from(frame).toString("latin1"), /^SW1 alice [A-Za-z0-9_-]{86}\n\{/);
    const opened = open(frame, subject, keyOf);
    assert.equal(opened.ok, true, JSON.stringify(opened));
    assert.equal(opened.ok && opened.signer, "alice");
    assert.deepEqual(opened.ok && Buffer.from(opened.body), body);
  });

  test("a changed body byte, subject, signer name or signature fails", () => {
    const frame = Buffer.from(seal(alice, subject, body));
    const badSignature = (bytes: Uint8Array, on = subject) => {
      const o = open(bytes, on, () => aliceKey);
      assert.equal(o.ok, false);
      assert.equal(!o.ok && o.kind, "bad signature");
    };
    const edited = Buffer.from(frame);
    edited.writeUInt8((edited.at(-3) ?? 0) ^ 1, edited.length - 3);
    badSignature(edited);
    badSignature(frame, methodSubject("ship2", "cliCommand", "alice"));
    badSignature(frame, methodSubject("ship1", "cliCommand", "mallory"));
    // Another name of the same length, checked with alice's key: the name is signed too.
    badSignature(Buffer.from(Buffer.from(frame).toString("latin1").replace("SW1 alice ", "SW1 alicf "), "latin1"));
    // The first character of the signature carries 6 whole bits of it.
    const text = frame.toString("latin1");
    const at = "SW1 alice ".length;
    const flipped = text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
    badSignature(Buffer.from(flipped, "latin1"));
  });

  test("a frame signed by one key fails with another; an unknown signer is said so", () => {
    const forged = seal({ ...mallory, name: "alice" }, subject, body);
    const o = open(forged, subject, keyOf);
    assert.equal(!o.ok && o.kind, "bad signature");
    const u = open(seal(makeIdentity("eve"), subject, body), subject, keyOf);
    assert.equal(!u.ok && u.kind, "unknown signer");
    assert.equal(!u.ok && u.signer, "eve");
  });

  test("readHeader refuses what is no frame; open calls it unsigned", () => {
    const sig = "A".repeat(86);
    const garbage = [
      "",
      "{}",
      '{"id":"x"}\n',
      `SW1 alice ${sig}`,
      `SW2 alice ${sig}\n{}`,
      `SW1 alice ${sig.slice(1)}\n{}`,
      `SW1 alice ${sig}!\n{}`,
      `SW1  ${sig}\n{}`,
      `SW1 alice x ${sig}\n{}`,
      `SW1 ${"a".repeat(300)} ${sig}\n{}`,
    ];
    for (const g of garbage) {
      assert.equal(readHeader(Buffer.from(g)), undefined, JSON.stringify(g));
      const o = open(Buffer.from(g), subject, keyOf);
      assert.equal(!o.ok && o.kind, "unsigned", JSON.stringify(g));
    }
    const random = Buffer.alloc(512);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919) & 0xff;
    assert.equal(readHeader(random), undefined);
  });
});

describe("rules in a fleet", () => {
  let fleet: Fleet;
  const all = ["ship1", "ship2", "ship3"];

  before(async () => {
    fleet = await Fleet.start("acl", ["central", "ship1", "ship2"]);
    // ship3's own settings narrow what central's rules allow: no cliCommand at all, ping from central only.
    await fleet.add("ship3", { startSubREQCliCommand: "", startSubREQPing: "central" });
    // Every node admitted everywhere: each has central's latest bundle.
    await sleepUntil(
      async () => {
        const { keys } = JSON.parse((await stewardOn(fleet, "central", ["keys", "list", "--json"])).stdout) as {
          keys: { state: string }[];
        };
        return keys.filter((k) => k.state === "approved").length === 4;
      },
      { what: "central to admit ship1, ship2 and ship3" },
    );
    await waitBundle(fleet, all);
  });
  after(() => fleet?.close());

  test("defaults: central runs a command on ship1", async () => {
    const id = await sendQuick(fleet, "central", "ship1", "cliCommand", ["echo", "from central"], { retries: 5 });
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "from central\n");
  });

  test("defaults: ship1 may not run a command on ship2; the refusal is the message's reason", async () => {
    const id = await sendQuick(fleet, "ship1", "ship2", "cliCommand", ["echo", "sneaky"], { retries: 5 });
    const m = await fleet.waitState("ship1", id);
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.equal(m.reason, "not allowed: ship1 may not call cliCommand on ship2");
  });

  test("defaults: ship1 may ping ship2 and report an error to central", async () => {
    const ping = await sendQuick(fleet, "ship1", "ship2", "ping", [], { retries: 5 });
    const report = await sendQuick(fleet, "ship1", "central", "errorLog", ["something broke"], { retries: 5 });
    const p = await fleet.waitState("ship1", ping);
    assert.equal(p.state, "done", JSON.stringify(p));
    const r = await fleet.waitState("ship1", report);
    assert.equal(r.state, "done", JSON.stringify(r));
  });

  test("a node's own startSub… setting narrows further: ship3 has no cliCommand subscriber, even for central", async () => {
    const id = await sendQuick(fleet, "central", "ship3", "cliCommand", ["echo", "x"]);
    const m = await fleet.waitState("central", id);
    assert.equal(m.state, "failed", JSON.stringify(m));
    assert.match(m.reason ?? "", /^max retries reached/);
  });

  test("a node's own allowedNodes narrow further: ship3 takes ping from central only", async () => {
    const [fromCentral, fromShip1] = await Promise.all([
      sendQuick(fleet, "central", "ship3", "ping", [], { retries: 5 }),
      sendQuick(fleet, "ship1", "ship3", "ping", [], { retries: 5 }),
    ]);
    const c = await fleet.waitState("central", fromCentral);
    assert.equal(c.state, "done", JSON.stringify(c));
    const s1 = await fleet.waitState("ship1", fromShip1);
    assert.equal(s1.state, "failed", JSON.stringify(s1));
    assert.equal(s1.reason, "refused by ship3: ship1 is not allowed to use ping on ship3 (allowedNodes)");
  });

  test("acl set: group:ops may echo lowercase words on label:site=north, nothing more", async () => {
    const approve1 = await stewardOn(fleet, "central", ["keys", "approve", "ship1", "--groups", "ops"]);
    assert.equal(approve1.code, 0, show(approve1));
    const approve2 = await stewardOn(fleet, "central", ["keys", "approve", "ship2", "--labels", "site=north"]);
    assert.equal(approve2.code, 0, show(approve2));
    const rules: Acl = {
      rules: [
        ...defaultAcl("central").rules,
        { from: ["group:ops"], methods: ["cliCommand"], to: ["label:site=north"], args: [["echo", "[a-z]+"]] },
      ],
    };
    const file = join(fleet.dir, "rules.json");
    writeFileSync(file, JSON.stringify(rules));
    const set = await stewardOn(fleet, "central", ["acl", "set", file]);
    assert.equal(set.code, 0, show(set));
    assert.match(set.stdout, /rules set \(3\); bundle version \d+ goes to every node now/);
    await waitBundle(fleet, all);

    const shown = await stewardOn(fleet, "central", ["acl", "show"]);
    assert.equal(shown.code, 0, show(shown));
    assert.match(shown.stdout, /^3\. group:ops may call cliCommand on label:site=north\n {3}only: echo \[a-z\]\+$/m);
    assert.match(shown.stdout, /^1\. central may call \* on \*$/m);
    const json = await stewardOn(fleet, "central", ["acl", "show", "--json"]);
    assert.deepEqual(JSON.parse(json.stdout), rules);

    const hello = await sendQuick(fleet, "ship1", "ship2", "cliCommand", ["echo", "hello"], { retries: 5 });
    const upper = await sendQuick(fleet, "ship1", "ship2", "cliCommand", ["echo", "HELLO"], { retries: 5 });
    const bash = await sendQuick(fleet, "ship1", "ship2", "cliCommand", ["bash", "-c", "x"], { retries: 5 });
    const m = await fleet.waitState("ship1", hello);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.equal(m.result?.data, "hello\n");
    for (const id of [upper, bash]) {
      const r = await fleet.waitState("ship1", id);
      assert.equal(r.state, "failed", JSON.stringify(r));
      assert.equal(r.reason, "not allowed: ship1 may not call cliCommand on ship2");
    }
    // ship2 is not in group ops: the rule is one way.
    const back = await sendQuick(fleet, "ship2", "ship1", "cliCommand", ["echo", "hello"], { retries: 5 });
    const b = await fleet.waitState("ship2", back);
    assert.equal(b.reason, "not allowed: ship2 may not call cliCommand on ship1");

    // ship2's audit log: the refusals with their signer, and the echo it ran with its signer.
    const audit = auditLines(fleet.node("ship2"));
    for (const id of [upper, bash]) {
      const line = audit.find((l) => l.event === "refused" && l.id === id);
      assert.deepEqual(
        line && { signer: line.signer, fromNode: line.fromNode, method: line.method, reason: line.reason },
        {
          signer: "ship1",
          fromNode: "ship1",
          method: "cliCommand",
          reason: "not allowed: ship1 may not call cliCommand on ship2",
        },
        JSON.stringify(audit),
      );
    }
    const ran = audit.find((l) => l.event === "executed" && l.id === hello);
    assert.equal(ran?.signer, "ship1", JSON.stringify(audit));
    assert.equal(ran?.exitCode, 0);
  });

  test("acl set with a bad file names the field, exits non-zero and changes nothing", async () => {
    const before = await stewardOn(fleet, "central", ["acl", "show", "--json"]);
    const version = await bundleOf(fleet.node("central"));
    const file = join(fleet.dir, "bad-rules.json");
    const cases: [unknown, RegExp][] = [
      [{ rules: [{ from: ["*"], methods: ["ping"], to: ["*"], arg: [["x"]] }] }, /rules\[0\]: unknown field "arg"/],
      [
        { rules: [{ from: ["*"], methods: ["cliComand"], to: ["*"] }] },
        /rules\[0\]\.methods: unknown method "cliComand"/,
      ],
      [
        { rules: [{ from: ["*"], methods: ["ping"], to: ["*"], args: [["x"]] }] },
        /rules\[0\]\.args: argument patterns/,
      ],
      [{ rules: [{ from: ["*"], methods: ["cliCommand"], to: ["*"], args: [["("]] }] }, /rules\[0\]\.args: /],
    ];
    for (const [doc, re] of cases) {
      writeFileSync(file, JSON.stringify(doc));
      const r = await stewardOn(fleet, "central", ["acl", "set", file]);
      assert.notEqual(r.code, 0, show(r));
      assert.match(r.stderr, re, show(r));
      assert.match(r.stderr, /rules not changed/, show(r));
    }
    writeFileSync(file, "{ not json");
    const notJson = await stewardOn(fleet, "central", ["acl", "set", file]);
    assert.notEqual(notJson.code, 0, show(notJson));
    assert.match(notJson.stderr, /is not JSON/, show(notJson));

    const after = await stewardOn(fleet, "central", ["acl", "show", "--json"]);
    assert.equal(after.stdout, before.stdout);
    assert.equal(await bundleOf(fleet.node("central")), version, "no new bundle");
  });

  test("a revoked node's scheduled command stops running on the receiver once it has the bundle", async () => {
    const ticks = join(fleet.node("ship1").dataFolder, "ship2", "ticks.txt");
    const clock = join(fleet.node("central").dataFolder, "ship2", "clock.txt");
    // Lines of output only: the last reply, which says why the schedule stopped, is written there too.
    const runs = (file: string) =>
      existsSync(file)
        ? readFileSync(file, "utf8")
            .split("\n")
            .filter((l) => l === "tick" || l === "clock").length
        : 0;
    // Allowed when sent: ship1 is in group ops, ship2 has site=north, and the command matches the rule.
    await fleet.sendOk("ship1", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["echo", "tick"],
      schedule: [1, 600],
      fileName: "ticks.txt",
    });
    await sleepUntil(() => runs(ticks) >= 2, { what: "two scheduled runs from ship1 on ship2" });

    const r = await stewardOn(fleet, "central", ["keys", "revoke", "ship1"]);
    assert.equal(r.code, 0, show(r));
    await waitBundle(fleet, ["ship2"]);
    const atRevocation = runs(ticks);
    // A clock on ship2 itself: central's own scheduled command, every second from now.
    await fleet.sendOk("central", {
      toNode: "ship2",
      method: "cliCommand",
      methodArgs: ["echo", "clock"],
      schedule: [1, 600],
      fileName: "clock.txt",
    });
    await sleepUntil(() => runs(clock) >= 4, { what: "four runs of central's scheduled command on ship2" });
    // One run may have been under way when the bundle came; none may start after it.
    assert.ok(
      runs(ticks) <= atRevocation + 1,
      `ship2 ran revoked ship1's command ${runs(ticks) - atRevocation} more times after taking the bundle that revokes ship1`,
    );
  });

  test("acl and keys commands are for central only: another node says where to run them", async () => {
    const r = await stewardOn(fleet, "ship1", ["acl", "show"]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /keys and rules are kept on central \(central\); run this on central's machine/);
  });
});
