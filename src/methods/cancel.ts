/**
 * cancel: a node withdrawing a message it sent earlier (`steward cancel`,
 * docs/DELIVERY.md). The inbox applies every cancel on arrival
 * (`cancels` in src/message/methods.ts), from its signer for that signer's
 * own messages only, and never stores or runs it as a message, so this
 * handler does not run today. It is here because every method has one.
 */
import type { MethodContext, MethodOutput } from "./method.js";

export async function cancel(ctx: MethodContext): Promise<MethodOutput> {
  return { exitCode: 0, data: `cancel of ${ctx.message.methodArgs[0] ?? "?"} from ${ctx.message.fromNode}` };
}
