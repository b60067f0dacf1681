/**
 * cliCommand: run methodArgs[0] with the rest as its arguments (no implicit
 * shell). The reply's data is stdout; exit code and stderr travel with it.
 * The command gets its own process group so that a timeout (or shutdown)
 * kills the whole tree, not just the first process.
 */
import { spawn } from "node:child_process";
import { MethodError } from "../errors.js";
import type { MethodContext, MethodOutput } from "./method.js";

const STDERR_LIMIT = 64 * 1024;

export async function cliCommand(ctx: MethodContext): Promise<MethodOutput> {
  const [command, ...args] = ctx.message.methodArgs;
  if (!command) throw new MethodError("cliCommand", "methodArgs is empty: give the command to run as its first element");
  if (ctx.signal.aborted) throw new MethodError("cliCommand", `not started: ${abortReason(ctx.signal)}`);

  return new Promise<MethodOutput>((resolve, reject) => {
    const child = spawn(command, args, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      cwd: ctx.dataFolder,
      // Scripts can tell where and for which message they run.
      env: { ...process.env, STEWARD_NODE_NAME: ctx.nodeName, STEWARD_MESSAGE_ID: ctx.message.id, STEWARD_FROM_NODE: ctx.message.fromNode },
    });
    const stdout = new Capture(ctx.maxOutput);
    const stderr = new Capture(STDERR_LIMIT);
    child.stdout.on("data", (b: Buffer) => stdout.add(b));
    child.stderr.on("data", (b: Buffer) => stderr.add(b));

    const killTree = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    if (child.pid !== undefined) ctx.onSpawn?.(child.pid);
    const onAbort = () => killTree();
    ctx.signal.addEventListener("abort", onAbort, { once: true });

    child.on("error", (err) => {
      ctx.signal.removeEventListener("abort", onAbort);
      reject(new MethodError("cliCommand", `cannot run "${command}": ${err.message}`, err));
    });
    child.on("close", (code, signal) => {
      ctx.signal.removeEventListener("abort", onAbort);
      // The leader exited; children it left behind in its group go too.
      killTree();
      if (ctx.signal.aborted) {
        reject(
          Object.assign(new MethodError("cliCommand", `${abortReason(ctx.signal)}; process tree killed`), {
            output: { data: stdout.text(), stderr: stderr.text(), exitCode: code } satisfies MethodOutput,
          }),
        );
        return;
      }
      resolve({
        data: stdout.text(),
        stderr: stderr.text(),
        exitCode: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : null),
        ...(stdout.dropped > 0 && { truncated: stdout.dropped }),
      });
    });
  });
}

function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error ? r.message : typeof r === "string" ? r : "aborted";
}

function signalNumber(name: string): number | undefined {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return table[name];
}

/** Keeps the first `limit` bytes and counts the rest: a chatty command never fills the memory. */
class Capture {
  private chunks: Buffer[] = [];
  private kept = 0;
  dropped = 0;
  constructor(private readonly limit: number) {}
  add(b: Buffer): void {
    const room = this.limit - this.kept;
    if (room <= 0) {
      this.dropped += b.length;
      return;
    }
    const part = b.length > room ? b.subarray(0, room) : b;
    this.chunks.push(part);
    this.kept += part.length;
    this.dropped += b.length - part.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}
