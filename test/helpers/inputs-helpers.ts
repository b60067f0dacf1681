/**
 * Checks shared by the tests of the inputs (socket, read folder): a valid
 * cliCommand to ship1 whose output names its id, and waiting for it to be done
 * on central.
 */
import assert from "node:assert/strict";
import { submit } from "../../src/client/client.js";
import type { Fleet } from "../../src/harness/fleet.js";
import { uniqueId } from "./cli-helpers.js";

/** `fleet` is read when a check runs: the fleet starts in the test file's `before`. */
export function inputChecks(fleet: () => Fleet) {
  /** A cliCommand to ship1 whose output names its id, so each result is told apart. */
  function valid(id: string, toNode = "ship1"): Record<string, unknown> {
    return { id, toNode, method: "cliCommand", methodArgs: ["echo", id], ACKTimeout: 5, retries: 3 };
  }

  async function assertDone(id: string, expectData?: string, timeoutMs?: number): Promise<void> {
    const m = await fleet().waitState("central", id, undefined, timeoutMs);
    assert.equal(m.state, "done", `message ${id}: ${JSON.stringify(m)}`);
    assert.equal(m.exitCode, 0);
    if (expectData !== undefined) assert.equal(m.result?.data, expectData);
  }

  /** Send a fresh valid message and see it through to done: the node is up and working. */
  async function stillWorks(tag: string, timeoutMs?: number): Promise<void> {
    const id = uniqueId(tag);
    const answers = await submit(fleet().node("central").socketPath, JSON.stringify(valid(id)));
    assert.deepEqual(answers, [{ ok: true, id, toNode: "ship1", method: "cliCommand" }]);
    await assertDone(id, `${id}\n`, timeoutMs);
  }

  function centralAlive(): void {
    assert.ok(fleet().node("central").running, "central is still running");
  }

  return { valid, assertDone, stillWorks, centralAlive };
}
