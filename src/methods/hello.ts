/**
 * hello: a node saying it is alive. Central records the time it was last
 * seen. Hellos are heartbeats, so the inbox records them on arrival (see
 * inbox.ts) and never stores or runs them as messages; this handler is what
 * a hello sent by an operator as an ordinary message runs, and it succeeds.
 */
import type { MethodContext, MethodOutput } from "./method.js";

export async function hello(ctx: MethodContext): Promise<MethodOutput> {
  return { exitCode: 0, data: `hello from ${ctx.message.fromNode} received by ${ctx.nodeName}` };
}
