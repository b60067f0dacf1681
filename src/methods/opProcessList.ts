/** opProcessList: the node's subscribers (one per method) and who may use each. */
import { MethodError } from "../errors.js";
import type { MethodContext, MethodOutput } from "./method.js";

export async function opProcessList(ctx: MethodContext): Promise<MethodOutput> {
  if (!ctx.subscribers) throw new MethodError("opProcessList", "this node has no subscriber registry");
  const lines = ctx.subscribers
    .list()
    .sort((a, b) => a.method.localeCompare(b.method))
    .map(
      (s) =>
        `${ctx.nodeName} subscriber ${s.method} allowedNodes=${s.allowedNodes === "*" ? "*" : s.allowedNodes.join(",")} since=${new Date(s.since).toISOString()}`,
    );
  return { data: `${lines.join("\n")}\n`, exitCode: 0 };
}
