/**
 * pong: the answer to a ping. On the node that sent the ping it marks the
 * round trip done (its data is kept with the message's state); as a request
 * of its own it simply succeeds.
 */
import type { MethodContext, MethodOutput } from "./method.js";

export async function pong(ctx: MethodContext): Promise<MethodOutput> {
  ctx.log.debug("pong", { fromNode: ctx.message.fromNode, requestId: ctx.message.requestId });
  return { exitCode: 0 };
}
