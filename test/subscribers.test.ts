/**
 * Who may send what: allowedNodes per subscriber, set by the startSubREQ…
 * settings and by the op methods (opProcessList/Start/Stop and the seeds'
 * legacy REQOpCommand).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("subscribers", ["central", "ship2"]);
  // ship1 runs commands for central only; its console subscriber is off.
  await fleet.add("ship1", { startSubREQCliCommand: "central", startSubREQToConsole: "" });
  // Central's rules allow everything here: what these tests show is how the local settings narrow them.
  await fleet.allowAll();
});
after(() => fleet.close());

const errorLog = (node: string) => join(fleet.node("central").dataFolder, "errorLog", node, "errorLog.log");

describe("allowedNodes from the startSubREQ… settings", () => {
  test("an allowed node's message runs", async () => {
    const [id] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "ok"] });
    assert.equal((await fleet.waitState("central", id as string)).state, "done");
  });

  test("a node that is not allowed gets a refusal, the command does not run, central's error log says so", async () => {
    const [id] = await fleet.sendOk("ship2", {
      toNode: "ship1",
      method: "cliCommand",
      methodArgs: ["echo", "not-for-you"],
    });
    const m = await fleet.waitState("ship2", id as string);
    assert.equal(m.state, "failed");
    assert.match(m.reason ?? "", /refused by ship1: ship2 is not allowed to use cliCommand on ship1/);
    assert.equal(m.attempt, 1, "a refusal is final: no retries");
    await sleepUntil(
      () => existsSync(errorLog("ship1")) && readFileSync(errorLog("ship1"), "utf8").includes("not allowed"),
      {
        what: "the refusal in central's error log",
      },
    );
  });

  test("a method whose subscriber is off is never ACKed: max retries reached", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "console",
      data: "x",
      ACKTimeout: 1,
      retries: 1,
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed");
    assert.match(m.reason ?? "", /max retries reached/);
  });
});

describe("op methods", () => {
  test("opProcessList lists the subscribers and their allowedNodes", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQOpProcessList",
      methodArgs: [],
      replyMethod: "none",
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");
    assert.match(m.result?.data ?? "", /ship1 subscriber cliCommand allowedNodes=central/);
    assert.doesNotMatch(m.result?.data ?? "", /subscriber console /);
  });

  test("opProcessStart starts a subscriber (with allowedNodes), opProcessStop stops it", async () => {
    const start = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQOpProcessStart",
      methodArgs: ["REQToConsole", "central"],
    });
    assert.equal((await fleet.waitState("central", start[0] as string)).state, "done");
    const [printed] = await fleet.sendOk("central", { toNode: "ship1", method: "console", data: "console is on" });
    assert.equal((await fleet.waitState("central", printed as string)).state, "done");
    await sleepUntil(() => fleet.node("ship1").stdout.includes("console is on"), { what: "ship1 printing" });

    const stop = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQOpProcessStop",
      methodArgs: ["REQToConsole", "ship1", "subscriber", "199"],
    });
    assert.equal((await fleet.waitState("central", stop[0] as string)).state, "done");
    const [again] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "console",
      data: "console is off",
      ACKTimeout: 1,
      retries: 1,
    });
    assert.equal((await fleet.waitState("central", again as string)).state, "failed");
    assert.ok(!fleet.node("ship1").stdout.includes("console is off"));
  });

  test("the seeds' REQOpCommand startProc / ps / stopProc work unchanged", async () => {
    const op = (operation: unknown) => ({
      directory: "opcommand_logs",
      fileName: "some.log",
      toNode: "ship2",
      data: [],
      method: "REQOpCommand",
      operation,
      ACKTimeout: 3,
      retries: 3,
      replyACKTimeout: 3,
      replyRetries: 3,
      methodTimeout: 7,
    });
    const ids = await fleet.sendOk("central", [
      op({ opCmd: "stopProc", opArg: { method: "REQHttpGet", kind: "subscriber", receivingNode: "ship2" } }),
    ]);
    assert.equal((await fleet.waitState("central", ids[0] as string)).state, "done");
    const [ps] = await fleet.sendOk("central", op({ opCmd: "ps" }));
    const listed = await fleet.waitState("central", ps as string);
    assert.doesNotMatch(listed.result?.data ?? "", /subscriber httpGet/);
    const [startProc] = await fleet.sendOk(
      "central",
      op({ opCmd: "startProc", opArg: { method: "REQHttpGet", allowedNodes: ["central", "node1"] } }),
    );
    assert.equal((await fleet.waitState("central", startProc as string)).state, "done");
    const [ps2] = await fleet.sendOk("central", op({ opCmd: "ps" }));
    assert.match(
      (await fleet.waitState("central", ps2 as string)).result?.data ?? "",
      /subscriber httpGet allowedNodes=central,node1/,
    );
    const log = readFileSync(join(fleet.node("central").dataFolder, "opcommand_logs", "ship2", "some.log"), "utf8");
    assert.match(log, /subscriber httpGet started/);
  });

  test("an op method cannot stop the op methods, and a bad opCmd is refused at input", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship2",
      method: "opProcessStop",
      methodArgs: ["opProcessStart"],
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed");
    assert.match(m.reason ?? "", /cut ship2 off from remote control/);
    const [answer] = await fleet.send("central", {
      toNode: "ship2",
      method: "REQOpCommand",
      operation: { opCmd: "reboot" },
    });
    assert.ok(answer && !answer.ok);
    assert.match(answer.error, /message 0, field "operation.opCmd"/);
  });
});
