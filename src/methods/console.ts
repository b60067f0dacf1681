/** console: print the data (a request's, or a reply's result) on this node's stdout. */
import type { MethodContext, MethodOutput } from "./method.js";

export async function consoleMethod(ctx: MethodContext): Promise<MethodOutput> {
  const text = decodeData(ctx);
  process.stdout.write(text.endsWith("\n") || text === "" ? text : `${text}\n`);
  return { exitCode: 0 };
}

export function decodeData(ctx: MethodContext): string {
  const { data, dataEncoding } = ctx.message;
  if (data === undefined) return "";
  return dataEncoding === "base64" ? Buffer.from(data, "base64").toString("utf8") : data;
}
