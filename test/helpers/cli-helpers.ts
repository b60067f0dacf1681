/**
 * Helpers for the input and CLI tests: run the built `steward` executable as
 * a child process, and talk to a node's unix socket the way `nc` does (with
 * or without closing the sending side).
 */
import { spawn } from "node:child_process";
import { createConnection } from "node:net";
import { STEWARD_BIN } from "../../src/harness/fleet.js";
import { envName, SETTINGS } from "../../src/node/config.js";

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** process.env without any Steward setting, so a developer's shell cannot change what a test sees. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const s of SETTINGS) delete env[envName(s.key)];
  delete env.CONFIG_FOLDER;
  return { ...env, ...extra };
}

/** Run `node dist/cli/main.js ARGS…`; kills it (and fails loudly) if it runs past `timeoutMs`. */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STEWARD_BIN, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: opts.env ?? cleanEnv(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `steward ${args.join(" ")} still running after ${opts.timeoutMs ?? 30_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 30_000);
    child.on("error", (err) => {
      clearTimeout(guard);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

export interface RawAnswer {
  /** Everything the node wrote back. */
  text: string;
  /** Non-empty answer lines. */
  lines: string[];
  /** The node closed the connection (we never ended our side when `keepOpen`). */
  closedByNode: boolean;
}

/**
 * Talk to a unix socket like `nc -U`: write `payload` (string or bytes) and,
 * unless `keepOpen`, close the sending side (like `nc -N`). Resolves when the
 * node closes the connection; rejects after `timeoutMs` if it never does.
 */
export function rawExchange(
  socketPath: string,
  payload: string | Buffer,
  opts: { keepOpen?: boolean; timeoutMs?: number } = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath, allowHalfOpen: true });
    let text = "";
    let closedByNode = false;
    const guard = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `the node did not close the connection within ${opts.timeoutMs ?? 15_000} ms; got so far: ${JSON.stringify(text.slice(0, 500))}`,
        ),
      );
    }, opts.timeoutMs ?? 15_000);
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      if (opts.keepOpen) socket.write(payload);
      else socket.end(payload);
    });
    socket.on("data", (d: string) => {
      text += d;
    });
    socket.on("end", () => {
      closedByNode = true;
      // Our side stays open in keepOpen mode until the node has closed its own: now we may go.
      socket.end();
    });
    socket.on("error", (err) => {
      clearTimeout(guard);
      reject(err);
    });
    socket.on("close", () => {
      clearTimeout(guard);
      resolve({ text, lines: text.split("\n").filter((l) => l.trim() !== ""), closedByNode });
    });
  });
}

/** Bytes that look like nothing: a fixed pseudo-random sequence (reproducible run to run). */
export function noise(length: number, seed = 12345): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (x >>> 16) & 0xff;
  }
  return out;
}

/** A message id unique to this test run, safe for the id field. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
