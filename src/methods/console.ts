/** console: print the data (a request's, or a reply's result) on this node's stdout. */
import type { MethodContext, MethodOutput } from "./method.js";
import { decodeData } from "./output.js";

export async function consoleMethod(ctx: MethodContext): Promise<MethodOutput> {
  const text = decodeData(ctx);
  process.stdout.write(text.endsWith("\n") || text === "" ? text : `${text}\n`);
  return { exitCode: 0 };
}
