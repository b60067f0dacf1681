/**
 * Batching for streaming methods: output is gathered and sent as one reply
 * per interval (or when a batch grows large), not one message per line —
 * a busy log must not become a flood of messages.
 */
import type { MethodContext } from "./method.js";

export const STREAM_INTERVAL_MS = 500;
export const STREAM_MAX_BYTES = 256 * 1024;

export class StreamBatcher {
  private buf = "";
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: MethodContext) {}

  push(text: string): void {
    this.buf += text;
    if (this.buf.length >= STREAM_MAX_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), STREAM_INTERVAL_MS);
  }

  /** Send what is gathered as a part of its own. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buf === "") return;
    const data = this.buf;
    this.buf = "";
    this.ctx.emit?.(data);
  }

  /** Stop the timer and hand back what is left, for the final reply. */
  rest(): string {
    clearTimeout(this.timer);
    this.timer = undefined;
    const data = this.buf;
    this.buf = "";
    return data;
  }
}
