/**
 * The errors a user can see, one class per failure. Each says what was wrong,
 * where (field, message index, node) and, where it can, what to do next.
 * Domain data lives in fields so that callers can act on it without parsing
 * the text. Two more classes stay private to the files in src/delivery/ that
 * throw and catch them: LinkProblem (a broker-link problem worded for the
 * node's log) and NotStored (a signal inside the runner, never shown).
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

/**
 * What a method gives back. Defined here, beside MethodError, because a
 * failed method may carry what it produced before it failed; methods import
 * it through src/methods/method.ts.
 */
export interface MethodOutput {
  /** The result: sent back as the reply's data. */
  data?: string;
  /** Exit code of a command; 0 for other methods that succeeded. */
  exitCode?: number | null;
  stderr?: string;
  /** Bytes dropped from the output because it was too large. */
  truncated?: number;
}

/** A method failed on the node that ran it; `reason` travels back in the reply. */
export class MethodError extends Error {
  readonly method: string;
  /** What the method produced before it failed (a command's output up to its timeout, an HTTP error's body). */
  readonly output: MethodOutput | undefined;
  constructor(method: string, reason: string, options: { cause?: unknown; output?: MethodOutput } = {}) {
    super(`${method}: ${reason}`, { cause: options.cause });
    this.name = "MethodError";
    this.method = method;
    this.output = options.output;
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

/** The command line is wrong (an unknown command or flag, a missing value); the CLI exits with code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
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
