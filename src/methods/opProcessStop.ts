/**
 * opProcessStop: stop the subscriber of a method on this node.
 * methodArgs as in the seeds: [method, receivingNode, kind, pid] — only the
 * method is needed; receivingNode, when given, must be this node, and kind
 * must be "subscriber". The op methods themselves cannot be stopped this way:
 * that would cut the node off from remote control.
 */
import { MethodError } from "../errors.js";
import { canonicalMethod, CATALOG } from "../message/methods.js";
import type { MethodContext, MethodOutput } from "./method.js";

export async function opProcessStop(ctx: MethodContext): Promise<MethodOutput> {
  if (!ctx.subscribers) throw new MethodError("opProcessStop", "this node has no subscriber registry");
  const [name, receivingNode, kind] = ctx.message.methodArgs;
  const method = canonicalMethod(name ?? "");
  if (!method)
    throw new MethodError(
      "opProcessStop",
      `methodArgs[0] must name a method to stop, got ${JSON.stringify(name ?? "")}`,
    );
  if (receivingNode && receivingNode !== ctx.nodeName) {
    throw new MethodError("opProcessStop", `receivingNode ${receivingNode} is not this node (${ctx.nodeName})`);
  }
  if (kind && kind !== "subscriber")
    throw new MethodError("opProcessStop", `kind "${kind}": only subscribers can be stopped`);
  if (CATALOG[method].control)
    throw new MethodError(
      "opProcessStop",
      `${method} stays: stopping it would cut ${ctx.nodeName} off from remote control`,
    );
  if (!ctx.subscribers.stop(method))
    throw new MethodError("opProcessStop", `no ${method} subscriber runs on ${ctx.nodeName}`);
  return { data: `${ctx.nodeName} subscriber ${method} stopped\n`, exitCode: 0 };
}
