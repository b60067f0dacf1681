/**
 * The read folder: a file dropped into <readFolder> is taken in and removed.
 * Its valid messages are accepted; when any part of it was refused, the file
 * is moved to <readFolder>/failed/ with a <name>.error beside it that says,
 * per message, what was wrong — nothing handed in is silently lost.
 *
 * Files whose name starts with "." or ends in ".tmp" are left alone (write
 * there, then rename), and a file is only read once it has not changed for
 * a moment, so a slow writer is never read half-way.
 */
import {
  type FSWatcher,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { type Acceptor, answerLine } from "./protocol.js";

const SETTLE_MS = 300;
/** Prefix of a file being taken in. */
const TAKING = ".taking-";
const SCAN_MS = 500;

export class ReadFolderInput {
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private failedFolder: string;
  private scanning = false;
  private closed = false;

  constructor(
    private readonly folder: string,
    private readonly acceptor: Acceptor,
    private readonly log: Logger,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {
    this.failedFolder = join(folder, "failed");
  }

  start(): void {
    mkdirSync(this.folder, { recursive: true });
    // A file claimed when the node stopped may or may not have been taken in: set it aside, with a note.
    for (const name of readdirSync(this.folder)) {
      if (!name.startsWith(TAKING)) continue;
      const moved = this.moveAside(join(this.folder, name), name.slice(TAKING.length), [
        "error the node stopped while taking this file in; check with `steward status` which of its messages were accepted before handing it in again",
      ]);
      this.log.warn("a read folder file was being taken in when the node stopped; moved aside", { movedTo: moved });
    }
    try {
      this.watcher = watch(this.folder, () => this.schedule(SETTLE_MS));
      this.watcher.on("error", () => undefined);
    } catch {
      // Polling below still finds every file.
    }
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      // One scan at a time: the next is scheduled when this one has taken its files in.
      this.timer = undefined;
      void this.scan().finally(() => {
        if (!this.closed && this.timer === undefined) this.schedule(SCAN_MS);
      });
    }, ms);
  }

  private async scan(): Promise<void> {
    if (this.scanning) return;
    this.scanning = true;
    try {
      await this.scanOnce();
    } finally {
      this.scanning = false;
    }
  }

  private async scanOnce(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.folder);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      if (name.startsWith(".") || name.endsWith(".tmp")) continue;
      const path = join(this.folder, name);
      try {
        const st = statSync(path);
        if (!st.isFile() || Date.now() - st.mtimeMs < SETTLE_MS) continue;
        await this.take(path, name);
      } catch (err) {
        this.log.warn("cannot read a file in the read folder", { file: path, reason: (err as Error).message });
      }
    }
  }

  private async take(original: string, name: string): Promise<void> {
    if (statSync(original).size > this.maxBytes) {
      this.moveAside(original, name, [`error file larger than ${this.maxBytes} bytes; split it into several files`]);
      return;
    }
    // Claim the file first (scans skip dot-files): if it cannot be claimed it is never read, and once
    // read it can never be read again — its messages run once, not at every scan.
    const path = join(this.folder, `${TAKING}${name}`);
    renameSync(original, path);
    const text = readFileSync(path, "utf8");
    // Removed only once its messages are on disk: accept() answers after the store's sync.
    const answers = await this.acceptor.accept(text, `readFolder:${name}`);
    const refused = answers.filter((a) => !a.ok);
    if (refused.length === 0) {
      unlinkSync(path);
      this.log.info("took in a file from the read folder", { file: name, messages: answers.length });
      return;
    }
    const moved = this.moveAside(path, name, answers.map(answerLine));
    this.log.warn("read folder file had bad messages; moved aside with an error file", {
      file: name,
      movedTo: moved,
      accepted: answers.length - refused.length,
      refused: refused.length,
    });
  }

  /** Move a file to failed/ with a <name>.error beside it; returns where it went. */
  private moveAside(path: string, name: string, lines: string[]): string {
    mkdirSync(this.failedFolder, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const moved = join(this.failedFolder, `${stamp}-${name}`);
    renameSync(path, moved);
    writeFileSync(`${moved}.error`, `${lines.join("\n")}\n`);
    return moved;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
