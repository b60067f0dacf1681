/** ping: the cheapest full round trip; answers with this node's name and time. Its reply goes to `pong`. */
import type { MethodContext, MethodOutput } from "./method.js";

export async function ping(ctx: MethodContext): Promise<MethodOutput> {
  return { data: `pong from ${ctx.nodeName} at ${new Date().toISOString()}`, exitCode: 0 };
}
