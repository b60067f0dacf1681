import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Fleet } from "../src/harness/fleet.js";

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start("smoke", ["central", "ship1"]);
});
after(() => fleet.close());

test("a cliCommand from central runs on ship1 and its stdout comes back", async () => {
  const [id] = await fleet.sendOk("central", { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "hi"] });
  const m = await fleet.waitState("central", id as string);
  assert.equal(m.state, "done");
  assert.equal(m.exitCode, 0);
  assert.equal(m.result?.data, "hi\n");
});
