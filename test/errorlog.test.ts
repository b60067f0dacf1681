/**
 * The error kernel: errors on any node go to central's error log; a node
 * that cannot reach central keeps its errors and sends them once it can.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("errorlog", ["central"]);
  await fleet.add("ship1", { errorMessageTimeout: 1 });
});
after(() => fleet.close());

test("an error raised while central is down reaches central's error log when it is back", async () => {
  const central = fleet.node("central");
  await central.stop();
  const [id] = await fleet.sendOk("ship1", {
    toNode: "ghost",
    method: "cliCommand",
    methodArgs: ["true"],
    ACKTimeout: 1,
    retries: 0,
  });
  assert.equal((await fleet.waitState("ship1", id as string)).state, "failed");
  // Central stays away for several of the error report's ACK windows.
  const reports = await sleepUntilReportAttempts(3);
  assert.ok(reports >= 3, `the error report kept being re-sent (${reports} attempts)`);
  await central.start();
  const file = join(central.dataFolder, "errorLog", "ship1", "errorLog.log");
  await sleepUntil(() => existsSync(file) && readFileSync(file, "utf8").includes(`id: ${id}`), {
    what: "the queued error on central",
  });
  const line =
    readFileSync(file, "utf8")
      .split("\n")
      .find((l) => l.includes(`id: ${id}`)) ?? "";
  assert.match(
    line,
    /^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}, error: toNode: ghost, fromNode: ship1, method: cliCommand, id: \S+: max retries reached/,
  );
});

/** The errorLog message on ship1, re-sent while central is away: wait for its attempt count. */
async function sleepUntilReportAttempts(n: number): Promise<number> {
  const { listMessages } = await import("../src/client/client.js");
  let attempts = 0;
  await sleepUntil(
    async () => {
      const report = (await listMessages(fleet.node("ship1").socketPath, 10)).find((m) => m.method === "errorLog");
      attempts = report?.attempt ?? 0;
      return attempts >= n && report?.state === "sent";
    },
    { timeoutMs: 30_000, what: `${n} attempts of the error report` },
  );
  return attempts;
}
