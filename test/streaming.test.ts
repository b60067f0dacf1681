/**
 * The methods whose results come back over time: cliCommandCont and tailFile
 * stream parts while they run. (httpGet's tests are in httpGet.test.ts.)
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";

let fleet: Fleet;

before(async () => {
  fleet = await Fleet.start("streaming", ["central", "ship1"]);
});
after(() => fleet.close());

const resultFile = (dir: string, file: string) => join(fleet.node("central").dataFolder, dir, "ship1", file);

describe("cliCommandCont", () => {
  test("streams output back while the command runs, then finishes done", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQnCliCommandCont",
      methodArgs: ["bash", "-c", "echo first; sleep 2; echo second"],
      replyMethod: "REQToFileAppend",
      directory: "cont",
      fileName: "out.log",
      methodTimeout: 20,
    });
    const file = resultFile("cont", "out.log");
    // The first line is on the sender while the command is still sleeping.
    await sleepUntil(() => existsSync(file) && readFileSync(file, "utf8").includes("first"), {
      what: "the first streamed part",
    });
    const during = await fleet.status("central", id as string);
    assert.equal(during.state, "running", "the message runs on while its parts come back");
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");
    assert.equal(readFileSync(file, "utf8"), "first\nsecond\n");
  });

  test("methodTimeout ends a follow-style command as its normal end", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "cliCommandCont",
      methodArgs: ["bash", "-c", "while true; do echo tick; sleep 0.3; done"],
      replyMethod: "none",
      methodTimeout: 2,
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done", JSON.stringify(m));
    assert.match(m.result?.data ?? "", /stopped: method timed out after 2s/);
  });
});

describe("tailFile", () => {
  test("sends new lines back, across truncation and rotation, until methodTimeout", async () => {
    const target = join(fleet.node("ship1").dataFolder, "app.log");
    writeFileSync(target, "old line, before the tail\n");
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQTailFile",
      methodArgs: [target],
      directory: "tail",
      fileName: "app.log",
      methodTimeout: 6,
    });
    const file = resultFile("tail", "app.log");
    const got = () => (existsSync(file) ? readFileSync(file, "utf8") : "");
    await fleet.waitState("central", id as string, "running");
    appendFileSync(target, "one\ntwo\n");
    await sleepUntil(() => got().includes("two\n"), { what: "lines appended to the followed file" });
    writeFileSync(target, "after truncate\n");
    await sleepUntil(() => got().includes("after truncate\n"), { what: "a line after truncation" });
    renameSync(target, `${target}.1`);
    writeFileSync(target, "after rotate\n");
    await sleepUntil(() => got().includes("after rotate\n"), { what: "a line after rotation" });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "done");
    assert.ok(!got().includes("old line"), "starts at the end of the file, like tail -f");
    assert.equal(got(), "one\ntwo\nafter truncate\nafter rotate\n");
  });

  test("a file that does not exist fails with the reason", async () => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "tailFile",
      methodArgs: ["/no/such/file.log"],
      methodTimeout: 3,
    });
    const m = await fleet.waitState("central", id as string);
    assert.equal(m.state, "failed");
    assert.match(m.reason ?? "", /cannot follow \/no\/such\/file\.log/);
  });
});
