/**
 * The README's first command: the demo, as a user runs it (the built CLI, a
 * working folder of its own). It starts its own broker and three nodes that
 * make their keys, admit each other through central and run the tour.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { STEWARD_BIN } from "../src/harness/fleet.js";

test("the demo runs from a clean folder: keys made and admitted, every step done", () => {
  const cwd = mkdtempSync(join(tmpdir(), "steward-test-demo-"));
  try {
    const run = spawnSync(process.execPath, [STEWARD_BIN, "demo"], { cwd, encoding: "utf8", timeout: 90_000 });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const out = run.stdout;
    assert.match(out, /central admits new keys at their first hello here \(autoApproveKeys=1/);
    assert.match(out, /ship1 and ship2 pinned central's key and hold its bundle/);
    assert.match(out, /ship1: done \(exit 0\)/);
    assert.match(out, /ship2: done \(exit 0\)/);
    assert.match(out, /its retries are spent, but it has a deliverBy: it is not/);
    assert.match(out, /steward cancel \S+: cancelled/);
    assert.match(out, /delivered and done .* after ship2 started/);
    assert.match(out, /the cancelled one: cancelled .*; never run on ship2/);
    assert.match(out, /Demo complete/);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
