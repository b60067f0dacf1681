/**
 * hello: a node saying it is alive. Central records the time it was last
 * seen. Hellos are heartbeats (`heartbeat` in src/message/methods.ts): the
 * inbox records every hello on arrival, one an operator sends too, and never
 * stores or runs it as a message, so this handler does not run today. It is
 * here because every method has one, and says what a run would.
 */
import type { MethodContext, MethodOutput } from "./method.js";

export async function hello(ctx: MethodContext): Promise<MethodOutput> {
  return { exitCode: 0, data: `hello from ${ctx.message.fromNode} received by ${ctx.nodeName}` };
}
