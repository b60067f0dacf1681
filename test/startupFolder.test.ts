/**
 * The startup folder: its messages are handed in at each start of the node
 * and delivered.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { listMessages, messageStatus, type MessageView } from "../src/client/client.js";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";

let fleet: Fleet;

before(async () => {
  fleet = await Fleet.start("startupFolder", ["ship1"]);
  // Central gets a startup folder with one message in it before its first start.
  const startup = join(fleet.dir, "central", "startup");
  mkdirSync(startup, { recursive: true });
  writeFileSync(
    join(startup, "uptime.json"),
    JSON.stringify({ toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "at-start"] }),
  );
  await fleet.add("central");
});
after(() => fleet.close());

describe("startup folder", () => {
  test("its messages are handed in at start and delivered", async () => {
    const sock = fleet.node("central").socketPath;
    let found: MessageView | undefined;
    await sleepUntil(async () => {
      const messages = await listMessages(sock, 100);
      const ids = messages.filter((m) => m.method === "cliCommand").map((m) => m.id);
      for (const id of ids) {
        const message = await messageStatus(sock, id);
        if (message.result?.data === "at-start\n") found = message;
      }
      return found?.state === "done";
    });
    assert.equal(found?.state, "done");
  });
});
