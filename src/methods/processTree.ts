/**
 * Running a command as its own process group, so that a timeout, shutdown or
 * crash recovery ends the whole tree — not just the first process. Shared by
 * cliCommand (collects output) and cliCommandCont (streams it).
 */
import { spawn } from "node:child_process";
import { MethodError } from "../errors.js";
import { withInheritedUmask } from "../umask.js";
import { abortReason, type MethodContext } from "./method.js";

/** Most bytes of a command's stderr kept with its result. */
export const STDERR_LIMIT = 64 * 1024;

export interface TreeExit {
  code: number | null;
  /** Set when the run was ended by ctx.signal (methodTimeout, shutdown). */
  aborted?: string;
}

export function runTree(
  ctx: MethodContext,
  method: string,
  on: { stdout: (b: Buffer) => void; stderr: (b: Buffer) => void },
): Promise<TreeExit> {
  // The method's argument check (src/message/methods.ts) has made sure there is a command.
  const [command = "", ...args] = ctx.message.methodArgs;
  if (ctx.signal.aborted) return Promise.reject(new MethodError(method, `not started: ${abortReason(ctx.signal)}`));
  return new Promise((resolve, reject) => {
    // The command gets the umask the node was started with, not the node's own private one (src/umask.ts).
    const child = withInheritedUmask(() =>
      spawn(command, args, {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        cwd: ctx.dataFolder,
        // Scripts can tell where and for which message they run.
        env: {
          ...process.env,
          STEWARD_NODE_NAME: ctx.nodeName,
          STEWARD_MESSAGE_ID: ctx.message.id,
          STEWARD_FROM_NODE: ctx.message.fromNode,
        },
      }),
    );
    child.stdout.on("data", on.stdout);
    child.stderr.on("data", on.stderr);
    if (child.pid !== undefined) ctx.onSpawn?.(child.pid);
    const killTree = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    ctx.signal.addEventListener("abort", killTree, { once: true });
    child.on("error", (err) => {
      ctx.signal.removeEventListener("abort", killTree);
      reject(new MethodError(method, `cannot run "${command}": ${err.message}`, { cause: err }));
    });
    // The leader exited: end what it left in its group now, or children holding stdout open keep "close" from ever coming.
    child.on("exit", () => killTree());
    child.on("close", (code, signal) => {
      ctx.signal.removeEventListener("abort", killTree);
      // The leader exited; children it left behind in its group go too.
      killTree();
      if (ctx.signal.aborted) resolve({ code, aborted: `${abortReason(ctx.signal)}; process tree killed` });
      else resolve({ code: code ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : null) });
    });
  });
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGTERM: 15,
};
