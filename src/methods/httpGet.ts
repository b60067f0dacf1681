/**
 * httpGet: GET methodArgs[0] from the receiving node and send the body back.
 * A non-2xx answer, a refused connection or methodTimeout is an error with
 * the reason; a body larger than maxMessageSize is cut, and the result says
 * how much was dropped.
 */
import { MethodError } from "../errors.js";
import { abortReason, type MethodContext, type MethodOutput } from "./method.js";
import { Capture } from "./output.js";

export async function httpGet(ctx: MethodContext): Promise<MethodOutput> {
  // The method's argument check (src/message/methods.ts) has made sure this is an http(s) URL.
  const url = ctx.message.methodArgs[0] ?? "";
  let res: Response;
  try {
    res = await fetch(url, { signal: ctx.signal, redirect: "follow" });
  } catch (err) {
    if (ctx.signal.aborted) throw new MethodError("httpGet", `GET ${url}: ${abortReason(ctx.signal)}`);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new MethodError("httpGet", `GET ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, {
      cause: err,
    });
  }
  const body = new Capture(ctx.maxOutput);
  try {
    if (res.body) for await (const chunk of res.body) body.add(Buffer.from(chunk as Uint8Array));
  } catch (err) {
    if (ctx.signal.aborted)
      throw new MethodError("httpGet", `GET ${url}: ${abortReason(ctx.signal)} while reading the body`);
    throw new MethodError("httpGet", `GET ${url}: reading the body failed: ${(err as Error).message}`, { cause: err });
  }
  const output: MethodOutput = { data: body.text(), exitCode: 0, ...(body.dropped > 0 && { truncated: body.dropped }) };
  if (!res.ok) throw new MethodError("httpGet", `GET ${url}: HTTP ${res.status} ${res.statusText}`, { output });
  return output;
}
