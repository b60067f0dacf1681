/**
 * The audit log: one JSON line per message accepted at this node's inputs
 * and per message executed here, in <auditLogFolder>/audit.log.
 *
 *   {"time", "event": "accepted", "message": <the Envelope as stored>}
 *   {"time", "event": "executed", "fromNode", "signer", "id", "method", "exitCode", "error"?, "rerun"?, "durationMs"}
 *   {"time", "event": "refused", "signer", "fromNode"?, "id"?, "method"?, "reason"}
 *
 * `signer` is the node whose key signed the message (checked before anything else; see docs/SECURITY.md).
 * An accepted line holds everything needed to send the message again (drop
 * `fromNode`, `attempt`, `deliverBy`, `deliverByGiven` and `runBy`, which are times by then; keep `id` to make
 * the re-send idempotent, drop it
 * for a new message). Rotated by size: audit.log → audit.log.1 … audit.log.5,
 * the oldest dropped. Each line is written (appendFileSync) before the input
 * answers, but not synced: it survives a crash of the node, not a power cut of
 * the machine — a disk sync per line would double the syncs of every message
 * (the store's one sync is what makes "accepted" durable). A failing write is
 * logged once and never stops the node.
 */
import { appendFileSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { errorText } from "../errors.js";
import type { Logger } from "../log.js";
import type { Envelope } from "../message/message.js";

/** Rotated files kept beside audit.log. */
export const AUDIT_KEEP = 5;

export interface ExecutedEntry {
  exitCode: number | null;
  error?: string;
  rerun?: boolean;
  durationMs: number;
}

export class AuditLog {
  /** Where the log is written; empty when the audit log is off (auditLogFolder ""). */
  readonly path: string;
  private size: number | undefined;
  private failing = false;

  constructor(
    folder: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {
    this.path = folder ? join(resolve(folder), "audit.log") : "";
  }

  accepted(message: Envelope): void {
    this.write({ time: new Date().toISOString(), event: "accepted", message });
  }

  executed(message: Envelope, e: ExecutedEntry): void {
    this.write({
      time: new Date().toISOString(),
      event: "executed",
      fromNode: message.fromNode,
      // The inbox takes a message only when its fromNode is the node whose key signed it.
      signer: message.fromNode,
      id: message.id,
      method: message.method,
      exitCode: e.exitCode,
      ...(e.error !== undefined && { error: e.error }),
      ...(e.rerun && { rerun: true }),
      durationMs: e.durationMs,
    });
  }

  /** A verified sender's message refused here (not allowed, expired, bad fields). */
  refused(message: Partial<Envelope>, signer: string, reason: string): void {
    this.write({
      time: new Date().toISOString(),
      event: "refused",
      signer,
      ...(typeof message.fromNode === "string" && { fromNode: message.fromNode }),
      ...(typeof message.id === "string" && { id: message.id }),
      ...(typeof message.method === "string" && { method: message.method }),
      reason,
    });
  }

  private write(entry: Record<string, unknown>): void {
    if (!this.path) return;
    const line = `${JSON.stringify(entry)}\n`;
    const bytes = Buffer.byteLength(line);
    try {
      if (this.size === undefined) {
        mkdirSync(resolve(this.path, ".."), { recursive: true });
        this.size = Math.max(0, fileSize(this.path));
      }
      if (this.size > 0 && this.size + bytes > this.maxBytes) {
        this.rotate();
        this.size = 0;
      }
      appendFileSync(this.path, line);
      this.size += bytes;
      if (this.failing) {
        this.failing = false;
        this.log.info("audit log writable again", { path: this.path });
      }
    } catch (err) {
      this.size = undefined; // Look at the file afresh next time.
      if (!this.failing) {
        this.failing = true;
        this.log.error("cannot write the audit log; entries are lost until it is writable again", {
          path: this.path,
          reason: errorText(err),
        });
      }
    }
  }

  private rotate(): void {
    rmSync(`${this.path}.${AUDIT_KEEP}`, { force: true });
    for (let i = AUDIT_KEEP - 1; i >= 1; i--) {
      if (fileSize(`${this.path}.${i}`) >= 0) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
    }
    renameSync(this.path, `${this.path}.1`);
  }
}

/** Size in bytes; -1 when there is no such file (0 would mean an empty one). */
function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}
