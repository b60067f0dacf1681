/**
 * opProcessStart: start the subscriber of a method on this node.
 * methodArgs: [method, allowedNode…] — no nodes means "*" (all). A running
 * subscriber gets the new allowedNodes.
 */
import { MethodError } from "../errors.js";
import { canonicalMethod } from "../message/methods.js";
import type { MethodContext, MethodOutput } from "./method.js";

export async function opProcessStart(ctx: MethodContext): Promise<MethodOutput> {
  if (!ctx.subscribers) throw new MethodError("opProcessStart", "this node has no subscriber registry");
  const [name, ...nodes] = ctx.message.methodArgs;
  const method = canonicalMethod(name ?? "");
  if (!method)
    throw new MethodError(
      "opProcessStart",
      `methodArgs[0] must name a method to start, got ${JSON.stringify(name ?? "")}`,
    );
  const allowed = nodes.length === 0 || nodes.includes("*") ? "*" : nodes;
  ctx.subscribers.start(method, allowed);
  return {
    data: `${ctx.nodeName} subscriber ${method} started, allowedNodes=${allowed === "*" ? "*" : allowed.join(",")}\n`,
    exitCode: 0,
  };
}
