/**
 * What methods make of data and output, shared between them: the text of a
 * message's data, the text a reply method writes for a result, and a capped
 * capture of what a command or a web server sends.
 */
import type { MethodContext } from "./method.js";

/** The message's data as text, base64 decoded when it says so. */
export function decodeData(ctx: MethodContext): string {
  const { data, dataEncoding } = ctx.message;
  if (data === undefined) return "";
  return dataEncoding === "base64" ? Buffer.from(data, "base64").toString("utf8") : data;
}

/** The text to write: the data, plus a line saying so when the method failed or ran twice. */
export function resultText(ctx: MethodContext): string {
  let text = decodeData(ctx);
  if (text !== "" && !text.endsWith("\n")) text += "\n";
  const r = ctx.message.result;
  if (r?.partial) return text; // Notes go with the last part only.
  if (r?.error) text += `[steward] ${ctx.message.requestId} failed on ${ctx.message.fromNode}: ${r.error}\n`;
  if (r?.truncated) text += `[steward] output cut: ${r.truncated} bytes dropped\n`;
  if (r?.rerun)
    text += `[steward] ${ctx.message.requestId} was run again after ${ctx.message.fromNode} restarted mid-run\n`;
  if (r?.interrupted)
    text += `[steward] ${ctx.message.requestId} was interrupted by a stop of ${ctx.message.fromNode} and run again at its start\n`;
  return text;
}

/** Keeps the first `limit` bytes and counts the rest: a chatty command never fills the memory. */
export class Capture {
  private chunks: Buffer[] = [];
  private kept = 0;
  dropped = 0;
  constructor(private readonly limit: number) {}
  add(b: Buffer): void {
    const room = this.limit - this.kept;
    if (room <= 0) {
      this.dropped += b.length;
      return;
    }
    const part = b.length > room ? b.subarray(0, room) : b;
    this.chunks.push(part);
    this.kept += part.length;
    this.dropped += b.length - part.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}
