/**
 * The read folder input of a real node, <node dir>/readfolder: a file dropped
 * in is taken in and removed; when any of its messages is refused, it is moved
 * to failed/ with an error file beside it, and its valid messages still run.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Fleet, sleepUntil } from "../src/harness/fleet.js";
import { uniqueId } from "./helpers/cli-helpers.js";
import { inputChecks } from "./helpers/inputs-helpers.js";

let fleet: Fleet;
const { valid, assertDone, centralAlive } = inputChecks(() => fleet);

before(async () => {
  fleet = await Fleet.start("readFolder", ["central", "ship1"]);
});
after(() => fleet.close());

describe("read folder", () => {
  const folder = () => fleet.node("central").readFolder;
  const failedFolder = () => join(folder(), "failed");

  /** Write the file the safe way (write elsewhere, then rename into the folder). */
  function drop(name: string, content: string): string {
    const staging = join(fleet.dir, "staging");
    mkdirSync(staging, { recursive: true });
    const tmp = join(staging, name);
    writeFileSync(tmp, content);
    const path = join(folder(), name);
    renameSync(tmp, path);
    return path;
  }

  /** The moved-aside file and its error file for `name` (moved files get a time-stamp prefix). */
  function failedPair(name: string): { moved?: string; error?: string } {
    if (!existsSync(failedFolder())) return {};
    const files = readdirSync(failedFolder());
    const moved = files.find((f) => f.endsWith(name) && f !== `${name}.error`);
    const error = files.find((f) => f.endsWith(`${name}.error`));
    return {
      ...(moved && { moved: join(failedFolder(), moved) }),
      ...(error && { error: join(failedFolder(), error) }),
    };
  }

  test("a valid file is taken in (it disappears) and its messages reach done", async () => {
    const a = uniqueId("rf-a");
    const b = uniqueId("rf-b");
    const name = `${uniqueId("valid")}.json`;
    const path = drop(name, JSON.stringify([valid(a), valid(b)]));
    await sleepUntil(() => !existsSync(path), { what: `${name} to be taken in` });
    assert.deepEqual(failedPair(name), {}, "nothing moved aside");
    await Promise.all([assertDone(a, `${a}\n`), assertDone(b, `${b}\n`)]);
  });

  test("a YAML file with the seeds' trailing-comma JSON style both work", async () => {
    const a = uniqueId("rf-yaml");
    const b = uniqueId("rf-seed");
    const yamlPath = drop(
      `${uniqueId("msg")}.yaml`,
      `id: ${a}\ntoNode: ship1\nmethod: cliCommand\nmethodArgs: [echo, yaml-file]\n`,
    );
    const seedPath = drop(
      `${uniqueId("seed")}.json`,
      `[\n    {\n        "id": "${b}",\n        "toNode": "ship1",\n        "method":"REQnCliCommand",\n        "methodArgs": ["bash","-c","echo seed"],\n        "replyMethod":"REQToFileAppend",\n    }\n]\n`,
    );
    await sleepUntil(() => !existsSync(yamlPath) && !existsSync(seedPath), { what: "both files to be taken in" });
    await assertDone(a, "yaml-file\n");
    await assertDone(b, "seed\n");
  });

  test("a file with valid and invalid messages: the valid ones run, the file is moved to failed/ with an error file", async () => {
    const a = uniqueId("mix-a");
    const b = uniqueId("mix-b");
    const name = `${uniqueId("mixed")}.json`;
    const content = JSON.stringify([
      valid(a),
      { toNode: "ship1", method: "nope" },
      valid(b),
      { ...valid(uniqueId("z")), fileName: "../x" },
    ]);
    const path = drop(name, content);
    await sleepUntil(() => !existsSync(path) && failedPair(name).error !== undefined, {
      what: `${name} to be moved aside`,
    });
    const { moved, error } = failedPair(name);
    assert.ok(moved, "the file itself is kept in failed/");
    assert.equal(readFileSync(moved, "utf8"), content, "moved unchanged");
    const lines = readFileSync(error as string, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    assert.equal(lines.length, 4, lines.join("\n"));
    assert.equal(lines[0], `accepted ${a} ship1 cliCommand`);
    assert.match(lines[1] as string, /^error message 1\b.*"method"/);
    assert.equal(lines[2], `accepted ${b} ship1 cliCommand`);
    assert.match(lines[3] as string, /^error message 3\b.*"fileName"/);
    await Promise.all([assertDone(a, `${a}\n`), assertDone(b, `${b}\n`)]);
  });

  test("an unparseable file is moved aside with an error file", async () => {
    const name = `${uniqueId("broken")}.json`;
    const path = drop(name, '{"toNode": "ship1", "method": "cliCommand", "methodArgs": [');
    await sleepUntil(() => !existsSync(path) && failedPair(name).error !== undefined, {
      what: `${name} to be moved aside`,
    });
    const { moved, error } = failedPair(name);
    assert.ok(moved);
    const text = readFileSync(error as string, "utf8");
    assert.match(text, /^error /);
    assert.match(text, /JSON|YAML/);
    centralAlive();
  });

  test('files starting with "." or ending ".tmp" are left alone', async () => {
    const hiddenId = uniqueId("hidden");
    const tmpId = uniqueId("tmp");
    const hidden = join(folder(), `.${uniqueId("hidden")}.json`);
    const partial = join(folder(), `${uniqueId("partial")}.json.tmp`);
    writeFileSync(hidden, JSON.stringify(valid(hiddenId)));
    writeFileSync(partial, JSON.stringify(valid(tmpId)));
    // A sentinel written after them: once it is taken in, the scanner has looked at the others too.
    const sentinelId = uniqueId("sentinel");
    const sentinel = drop(`${uniqueId("sentinel")}.json`, JSON.stringify(valid(sentinelId)));
    await sleepUntil(() => !existsSync(sentinel), { what: "the sentinel file to be taken in" });
    await assertDone(sentinelId);
    assert.ok(existsSync(hidden), "the dot file is still there");
    assert.ok(existsSync(partial), "the .tmp file is still there");
    for (const id of [hiddenId, tmpId]) {
      await assert.rejects(fleet.status("central", id), /no message with id/, `${id} was not taken in`);
    }
  });
});
