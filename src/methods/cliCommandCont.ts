/**
 * cliCommandCont: like cliCommand, but its output comes back while the
 * command runs, in batches, until it exits or methodTimeout ends it. Ending
 * at methodTimeout is the normal way for a follow-style command (`tail -f`)
 * to stop, so it is not an error; the result says so.
 */
import type { MethodContext, MethodOutput } from "./method.js";
import { Capture } from "./output.js";
import { runTree, STDERR_LIMIT } from "./processTree.js";
import { StreamBatcher } from "./stream.js";

export async function cliCommandCont(ctx: MethodContext): Promise<MethodOutput> {
  const batcher = new StreamBatcher(ctx);
  const stderr = new Capture(STDERR_LIMIT);
  const exit = await runTree(ctx, "cliCommandCont", {
    stdout: (b) => batcher.push(b.toString("utf8")),
    stderr: (b) => stderr.add(b),
  });
  const rest = batcher.rest();
  const note = exit.aborted ? `[steward] stopped: ${exit.aborted}\n` : "";
  return { data: rest + note, stderr: stderr.text(), exitCode: exit.aborted ? 0 : exit.code };
}
