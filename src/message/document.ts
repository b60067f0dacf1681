/**
 * Decoding a document: JSON or YAML, one object or an array of them, into raw
 * values (parse.ts checks their fields). JSON text is walked by one scanner,
 * JsonScanner, which knows where strings and brackets are: it finds the
 * trailing commas of the seeds' examples, measures nesting before the YAML
 * parser sees hostile input, and tells an input, chunk by chunk, when a
 * document has ended.
 */
import { createRequire } from "node:module";
import type * as Yaml from "yaml";
import { MessageInputError } from "../errors.js";

/** YAML is parsed only below this size and nesting: its parser is far slower than JSON's on hostile input. */
const YAML_MAX_BYTES = 256 * 1024;
/** Text that looks like JSON but is not is tried as YAML flow style only when it is this small. */
const FLOW_YAML_MAX_BYTES = 64 * 1024;
const YAML_MAX_DEPTH = 64;

const QUOTE = 34; // "
const BACKSLASH = 92;
const COMMA = 44;
const OPEN_SQUARE = 91;
const CLOSE_SQUARE = 93;
const OPEN_CURLY = 123;
const CLOSE_CURLY = 125;

const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
const isClose = (c: number) => c === CLOSE_SQUARE || c === CLOSE_CURLY;

/**
 * Walks JSON text outside its double-quoted strings, keeping its place between
 * chunks, so a large document arriving in pieces is scanned once, not once per
 * chunk. It does not check the JSON: JSON.parse does that once the text is whole.
 */
export class JsonScanner {
  /** Bracket nesting now. */
  depth = 0;
  /** Deepest bracket nesting seen. */
  maxDepth = 0;
  /** False once the text is known not to start with "[" or "{" (with `firstValueOnly`). */
  possible = true;
  /** True once the outermost bracket has closed. */
  closed = false;
  private inString = false;
  private escaped = false;
  private started = false;
  private readonly firstValueOnly: boolean;

  /**
   * `firstValueOnly`: the text must start with "[" or "{" (else `possible`
   * turns false), and scanning stops where that first value ends.
   */
  constructor(options: { firstValueOnly?: boolean } = {}) {
    this.firstValueOnly = options.firstValueOnly ?? false;
  }

  /**
   * Scan the next chunk. `visit` sees every character outside strings (the
   * quote that opens one included) with its index in the chunk. Returns
   * whether the outermost bracket has closed.
   */
  feed(chunk: string, visit?: (code: number, index: number) => void): boolean {
    for (let i = 0; i < chunk.length; i++) {
      if (this.firstValueOnly && (this.closed || !this.possible)) break;
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        continue;
      }
      if (this.firstValueOnly && !this.started) {
        if (isSpace(c)) continue;
        if (c !== OPEN_SQUARE && c !== OPEN_CURLY) {
          this.possible = false;
          break;
        }
        this.started = true;
      }
      visit?.(c, i);
      if (c === QUOTE) this.inString = true;
      else if (c === OPEN_SQUARE || c === OPEN_CURLY) this.maxDepth = Math.max(this.maxDepth, ++this.depth);
      else if (isClose(c) && --this.depth === 0) this.closed = true;
    }
    return this.closed;
  }
}

/**
 * The YAML parser, loaded on the first document that is not JSON. Every node
 * imports this module, but most only ever see JSON: loading yaml eagerly cost
 * each node about 1.7 MB of resident memory and 40 ms of start time. `require`
 * because parsing is synchronous (yaml ships CommonJS for Node).
 */
let yaml: typeof Yaml | undefined;
function yamlParser(): typeof Yaml {
  yaml ??= createRequire(import.meta.url)("yaml") as typeof Yaml;
  return yaml;
}

/** Parse a whole document into raw objects; throws MessageInputError when it is neither JSON nor YAML. */
export function parseDocument(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === "") throw new MessageInputError("empty input: expected a JSON or YAML message, or an array of them");
  const value = /^[[{]/.test(trimmed) ? parseJsonish(trimmed) : parseYaml(trimmed);
  return Array.isArray(value) ? value : [value];
}

/** JSON, with the trailing commas the seeds' own examples carry; YAML flow style as a last resort for small input. */
function parseJsonish(text: string): unknown {
  let firstError: Error;
  try {
    return JSON.parse(text);
  } catch (err) {
    firstError = err as Error;
  }
  try {
    return JSON.parse(stripTrailingCommas(text));
  } catch {
    // Fall through: maybe YAML flow style ({toNode: ship1, method: ping}).
  }
  if (text.length <= FLOW_YAML_MAX_BYTES && maxDepth(text) <= YAML_MAX_DEPTH) {
    try {
      return parseYaml(text);
    } catch {
      // Report the JSON error: the text looked like JSON.
    }
  }
  throw new MessageInputError(`cannot parse input as JSON: ${firstError.message}`);
}

function parseYaml(text: string): unknown {
  if (text.length > YAML_MAX_BYTES)
    throw new MessageInputError(`YAML input over ${YAML_MAX_BYTES} bytes is not taken; send large documents as JSON`);
  if (maxDepth(text) > YAML_MAX_DEPTH) throw new MessageInputError(`input nests deeper than ${YAML_MAX_DEPTH} levels`);
  const list = yamlParser().parseAllDocuments(text, { uniqueKeys: false });
  const docs = Array.isArray(list) ? list : [list];
  const bad = docs.find((d) => d.errors.length > 0);
  if (bad) {
    const reason = bad.errors[0]?.message.split("\n")[0]?.replace(/:$/, "") ?? "syntax error";
    throw new MessageInputError(`cannot parse input as YAML: ${reason}`);
  }
  const values = docs.map((d) => d.toJS() as unknown);
  return values.length === 1 ? values[0] : values.flat();
}

/** Remove a comma that stands right before a closing bracket, outside strings. */
export function stripTrailingCommas(text: string): string {
  const drop: number[] = [];
  let comma = -1;
  new JsonScanner().feed(text, (c, at) => {
    if (c === COMMA) comma = at;
    else if (isClose(c) && comma >= 0) {
      drop.push(comma);
      comma = -1;
    } else if (!isSpace(c)) comma = -1;
  });
  if (drop.length === 0) return text;
  const parts: string[] = [];
  let from = 0;
  for (const at of drop) {
    parts.push(text.slice(from, at));
    from = at + 1;
  }
  parts.push(text.slice(from));
  return parts.join("");
}

/** Deepest bracket nesting outside double-quoted strings (a cheap guard before the YAML parser). */
function maxDepth(text: string): number {
  const scanner = new JsonScanner();
  scanner.feed(text);
  return scanner.maxDepth;
}
