/**
 * cliCommand: run methodArgs[0] with the rest as its arguments (no implicit
 * shell). The reply's data is stdout; exit code and stderr travel with it.
 * On methodTimeout the whole process tree is killed and the message fails,
 * keeping what the command printed until then.
 */
import { MethodError } from "../errors.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { Capture } from "./output.js";
import { runTree, STDERR_LIMIT } from "./processTree.js";

export async function cliCommand(ctx: MethodContext): Promise<MethodOutput> {
  const stdout = new Capture(ctx.maxOutput);
  const stderr = new Capture(STDERR_LIMIT);
  const exit = await runTree(ctx, "cliCommand", { stdout: (b) => stdout.add(b), stderr: (b) => stderr.add(b) });
  const output: MethodOutput = {
    data: stdout.text(),
    stderr: stderr.text(),
    exitCode: exit.code,
    ...(stdout.dropped > 0 && { truncated: stdout.dropped }),
  };
  if (exit.aborted) throw new MethodError("cliCommand", exit.aborted, { output });
  return output;
}
