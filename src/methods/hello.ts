/** hello: a node saying it is alive. Central records the time it was last seen. */
import type { MethodContext, MethodOutput } from "./method.js";

export async function hello(ctx: MethodContext): Promise<MethodOutput> {
  ctx.recordHello?.(ctx.message.fromNode);
  return { exitCode: 0 };
}
