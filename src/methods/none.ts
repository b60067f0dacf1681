/** none: do nothing. As a replyMethod it means "I only want the state, not the data". */
import type { MethodOutput } from "./method.js";

export async function none(): Promise<MethodOutput> {
  return { exitCode: 0 };
}
