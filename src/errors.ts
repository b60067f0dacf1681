/**
 * Every error a user can see. Each says what was wrong, where (field, message
 * index, node) and, where it can, what to do next. Domain data lives in fields
 * so that callers can act on it without parsing the text.
 */

/** A message handed to an input was refused; nothing of it was stored. */
export class MessageInputError extends Error {
  /** Position of the message in its batch (0-based), when the document parsed. */
  readonly index: number | undefined;
  /** The offending field, when one field is to blame. */
  readonly field: string | undefined;
  constructor(reason: string, opts: { index?: number; field?: string } = {}) {
    const where = [
      opts.index === undefined ? undefined : `message ${opts.index}`,
      opts.field === undefined ? undefined : `field "${opts.field}"`,
    ]
      .filter(Boolean)
      .join(", ");
    super(where ? `${where}: ${reason}` : reason);
    this.name = "MessageInputError";
    this.index = opts.index;
    this.field = opts.field;
  }
}

/** A setting has a value Steward cannot run with. */
export class ConfigError extends Error {
  readonly setting: string;
  constructor(setting: string, reason: string) {
    super(`setting ${setting}: ${reason}`);
    this.name = "ConfigError";
    this.setting = setting;
  }
}

/** The local store (SQLite) could not be opened or written. */
export class StoreError extends Error {
  readonly path: string;
  /** The write is known not to be stored (its transaction was rolled back); without it, it may be. */
  readonly lost: boolean;
  constructor(path: string, reason: string, cause?: unknown, lost = false) {
    super(`store ${path}: ${reason}`, { cause });
    this.name = "StoreError";
    this.path = path;
    this.lost = lost;
  }
}

/** A method failed on the node that ran it; `reason` travels back in the reply. */
export class MethodError extends Error {
  readonly method: string;
  constructor(method: string, reason: string, cause?: unknown) {
    super(`${method}: ${reason}`, { cause });
    this.name = "MethodError";
    this.method = method;
  }
}

/** The local node could not be reached through its socket. */
export class NodeUnreachableError extends Error {
  readonly socketPath: string;
  constructor(socketPath: string, cause?: unknown) {
    super(
      `cannot reach the local Steward node at ${socketPath}: is it running? ` +
        `Start it with "steward start", or point to its folder with --socket-folder or --config-folder`,
      { cause },
    );
    this.name = "NodeUnreachableError";
    this.socketPath = socketPath;
  }
}

/** The local node answered a query with an error (an unknown id, say). */
export class NodeQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NodeQueryError";
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
