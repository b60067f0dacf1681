/**
 * Helpers for the trust and rules tests: the `steward` executable run against
 * one node's socket, a node's bundle version, its audit log and its dropped
 * counter, a message sent with short ACK windows (so a refusal or a silent
 * drop shows as a final state in seconds), and a key pair made on the spot.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { health } from "../../src/client/client.js";
import { type Fleet, sleepUntil } from "../../src/harness/fleet.js";
import type { NodeProcess } from "../../src/harness/nodeProcess.js";
import type { Identity } from "../../src/security/identity.js";
import { rawPublicKey } from "../../src/security/identity.js";
import { type CliResult, runCli } from "./cli-helpers.js";

/** `steward ARGS… --socket-folder <node's socket folder>`, run from the fleet's folder. */
export function stewardOn(fleet: Fleet, node: string, args: string[]): Promise<CliResult> {
  return runCli([...args, "--socket-folder", join(fleet.node(node).opts.dir, "tmp")], { cwd: fleet.dir });
}

export const show = (r: CliResult): string =>
  `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** The version of central's bundle a node holds (0: none). */
export async function bundleOf(node: NodeProcess): Promise<number> {
  return (await health(node.socketPath)).bundle;
}

/** Wait until every named node holds the bundle central holds now. */
export async function waitBundle(fleet: Fleet, names: string[]): Promise<number> {
  const version = await bundleOf(fleet.node("central"));
  for (const name of names) {
    await sleepUntil(async () => (await bundleOf(fleet.node(name))) >= version, {
      what: `${name} to take bundle ${version}`,
    });
  }
  return version;
}

/**
 * Send a message with short ACK windows: a refused one fails at once, one dropped unanswered fails with
 * "max retries" within (1 + retries) × ACKTimeout seconds. Returns its id.
 */
export async function sendQuick(
  fleet: Fleet,
  from: string,
  to: string,
  method: string,
  methodArgs: string[] = [],
  opts: { ACKTimeout?: number; retries?: number } = {},
): Promise<string> {
  const [id] = await fleet.sendOk(from, {
    toNode: to,
    method,
    methodArgs,
    ACKTimeout: opts.ACKTimeout ?? 1,
    retries: opts.retries ?? 1,
    retryWait: 0,
  });
  return id as string;
}

/** The lines of a node's audit.log (auditLogFolder defaults to ./var/log in the node's working folder). */
export function auditLines(node: NodeProcess): Record<string, unknown>[] {
  let text = "";
  try {
    text = readFileSync(join(node.opts.dir, "var", "log", "audit.log"), "utf8");
  } catch {
    // not written yet
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The node's log as text. */
export function logText(node: NodeProcess): string {
  try {
    return readFileSync(node.logPath, "utf8");
  } catch {
    return "";
  }
}

/** `steward_unverified_dropped_total{reason="…"}` from a node's metrics endpoint (0 when not counted yet). */
export async function droppedCount(port: number, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const series = `steward_unverified_dropped_total{reason="${reason}"} `;
  const line = text.split("\n").find((l) => l.startsWith(series));
  return line === undefined ? 0 : Number(line.slice(series.length));
}

/** A fresh ed25519 identity under any name: an attacker's, or a node's made by the test. */
export function makeIdentity(name: string): Identity {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { name, publicKey: rawPublicKey(publicKey), key: privateKey, sign: (data) => sign(null, data, privateKey) };
}
