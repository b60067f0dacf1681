/**
 * Input → messages. A document is JSON or YAML, one object or an array of
 * them (decoded by document.ts). Each object's fields are checked here on
 * their own: a bad one gets an error naming its index and field, and the good
 * ones of the same batch still go through. `toNodes` fans out into one
 * message per node, each with its own id.
 */
import { MessageInputError } from "../errors.js";
import { MAX_SECONDS } from "../timers.js";
import { fromCtrlForm } from "./ctrl.js";
import { parseDocument } from "./document.js";
import { newId } from "./id.js";
import type { Message } from "./message.js";
import {
  argsProblem,
  canonicalMethod,
  defaultReplyMethod,
  type MethodName,
  REPLY_METHODS,
  unknownMethodReason,
} from "./methods.js";
import { badTokenReason, directoryProblem, fileNameProblem } from "./names.js";

/** Per-node defaults applied to fields a message leaves out. */
export interface MessageDefaults {
  ACKTimeout: number;
  retries: number;
  methodTimeout: number;
}

/** One entry per object of the batch (or one error for a document that did not parse). */
export type ParseOutcome =
  { index: number; messages: Message[] } | { index: number | undefined; error: MessageInputError };

const FIELDS = new Set([
  "id",
  "toNode",
  "toNodes",
  "method",
  "methodArgs",
  "replyMethod",
  "replyMethodArgs",
  "ACKTimeout",
  "retries",
  "retryWait",
  "replyACKTimeout",
  "replyRetries",
  "methodTimeout",
  "replyMethodTimeout",
  "directory",
  "fileName",
  "data",
  "dataEncoding",
  "schedule",
  "operation",
]);

/**
 * Parse and check a document. Never throws: a document that does not parse
 * comes back as one error outcome.
 */
export function parseMessages(text: string, defaults: MessageDefaults): ParseOutcome[] {
  let raws: unknown[];
  try {
    raws = parseDocument(text);
  } catch (err) {
    return [{ index: undefined, error: err as MessageInputError }];
  }
  return raws.map((raw, index) => {
    try {
      return { index, messages: toMessages(raw, index, defaults) };
    } catch (err) {
      if (err instanceof MessageInputError) return { index, error: err };
      throw err;
    }
  });
}

/** Check one raw object and fan it out into messages. Throws MessageInputError. */
export function toMessages(raw: unknown, index: number, defaults: MessageDefaults): Message[] {
  const fail = (field: string | undefined, reason: string): never => {
    throw new MessageInputError(reason, field === undefined ? { index } : { index, field });
  };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return fail(undefined, `expected an object with "toNode" and "method", got ${describe(raw)}`);
  }
  const o = fromCtrlForm(raw as Record<string, unknown>, fail);
  for (const key of Object.keys(o)) {
    if (!FIELDS.has(key)) fail(key, `unknown field; known fields: ${[...FIELDS].join(", ")}`);
  }

  const str = (field: string): string | undefined => {
    const v = o[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") return fail(field, `expected a string, got ${describe(v)}`);
    return v;
  };
  const int = (field: string, fallback: number, min = 0): number => {
    const v = o[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v))
      return fail(field, `expected a whole number of seconds, got ${describe(v)}`);
    if (v < min) return fail(field, `must be ${min} or more, got ${v}`);
    if (v > MAX_SECONDS)
      return fail(field, `must be at most ${MAX_SECONDS} (about 24 days)${min < 0 ? "; -1 means no limit" : ""}`);
    return v;
  };
  const strings = (field: string): string[] => {
    const v = o[field];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return fail(field, `expected an array of strings, got ${describe(v)}`);
    // YAML reads `- 1` as a number; an argument is text either way.
    return v.map((item, i) => {
      if (typeof item === "string") return item;
      if ((typeof item === "number" && Number.isFinite(item)) || typeof item === "boolean") return String(item);
      return fail(`${field}[${i}]`, `expected a string, got ${describe(item)}`);
    });
  };

  // Targets.
  const targets: string[] = [];
  const toNode = str("toNode");
  if (toNode !== undefined) targets.push(toNode);
  if (o.toNodes !== undefined && o.toNodes !== null) {
    for (const n of strings("toNodes")) if (!targets.includes(n)) targets.push(n);
  }
  if (targets.length === 0)
    fail("toNode", `missing: say which node runs the method ("toNode": "ship1", or "toNodes": [...])`);
  for (const t of targets) {
    const bad = badTokenReason(t);
    if (bad) fail(toNode === t ? "toNode" : "toNodes", `node name ${bad}`);
  }

  // Methods.
  const methodRaw = str("method");
  if (methodRaw === undefined) return fail("method", `missing: say what to run, e.g. "method": "cliCommand"`);
  // The seeds' legacy REQOpCommand carries its operation in "operation": {opCmd, opArg}.
  const legacy = methodRaw === "REQOpCommand" ? legacyOpCommand(o.operation, fail) : undefined;
  const method = legacy?.method ?? canonicalMethod(methodRaw);
  if (!method) return fail("method", unknownMethodReason(methodRaw));
  const replyRaw = str("replyMethod");
  const replyMethod = replyRaw === undefined ? defaultReplyMethod(method) : canonicalMethod(replyRaw);
  if (!replyMethod) return fail("replyMethod", unknownMethodReason(replyRaw ?? ""));
  if (!REPLY_METHODS.includes(replyMethod)) {
    fail("replyMethod", `"${replyRaw}" cannot handle a reply; use one of ${REPLY_METHODS.join(", ")}`);
  }

  const methodArgs = legacy?.methodArgs ?? strings("methodArgs");
  const directory = str("directory");
  const argsIssue = argsProblem(method, { methodArgs, directory });
  if (argsIssue) fail(argsIssue.field, argsIssue.reason);

  // Where results go: see src/methods/paths.ts.
  const fileName = str("fileName");
  const directoryIssue = directory === undefined ? undefined : directoryProblem(directory);
  if (directoryIssue) fail("directory", directoryIssue);
  const fileNameIssue = fileName === undefined ? undefined : fileNameProblem(fileName);
  if (fileNameIssue) fail("fileName", fileNameIssue);

  // Payload: the seeds' REQOpCommand examples carry "data": [], so an array of lines is text too.
  let data: string | undefined;
  if (Array.isArray(o.data)) data = strings("data").join("\n") || undefined;
  else data = str("data");
  const dataEncoding = str("dataEncoding");
  if (dataEncoding !== undefined && dataEncoding !== "base64") fail("dataEncoding", `only "base64" is known`);

  let schedule: [number, number] | undefined;
  if (o.schedule !== undefined && o.schedule !== null) {
    const v = o.schedule;
    const ok =
      Array.isArray(v) &&
      v.length === 2 &&
      v.every((n) => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= MAX_SECONDS);
    if (!ok || (v[0] as number) < 1)
      fail(
        "schedule",
        `expected [interval, total] in whole seconds, interval 1 or more, e.g. [60, 3600]; got ${describe(v)}`,
      );
    schedule = v as [number, number];
  }
  if (
    o.operation !== undefined &&
    o.operation !== null &&
    (typeof o.operation !== "object" || Array.isArray(o.operation))
  ) {
    fail("operation", `expected an object like {"opCmd": "ps"}, got ${describe(o.operation)}`);
  }

  const idRaw = str("id");
  if (idRaw !== undefined && !/^[A-Za-z0-9._:@-]{1,128}$/.test(idRaw)) {
    fail("id", "use 1 to 128 letters, digits or . _ : @ -");
  }

  const ACKTimeout = int("ACKTimeout", defaults.ACKTimeout);
  const retries = int("retries", defaults.retries);
  const methodTimeout = int("methodTimeout", defaults.methodTimeout, -1);
  const base = {
    method,
    methodArgs,
    replyMethod,
    replyMethodArgs: strings("replyMethodArgs"),
    ACKTimeout,
    retries,
    retryWait: int("retryWait", 0),
    replyACKTimeout: int("replyACKTimeout", ACKTimeout === 0 ? defaults.ACKTimeout : ACKTimeout),
    replyRetries: int("replyRetries", retries),
    methodTimeout,
    replyMethodTimeout: int("replyMethodTimeout", defaults.methodTimeout, -1),
    ...(directory !== undefined && { directory }),
    ...(fileName !== undefined && { fileName }),
    ...(data !== undefined && { data }),
    ...(dataEncoding === "base64" && { dataEncoding: "base64" as const }),
    ...(o.operation ? { operation: o.operation as Record<string, unknown> } : {}),
    ...(schedule && { schedule }),
  };
  return targets.map((node) => ({
    id: idRaw === undefined ? newId() : targets.length === 1 ? idRaw : `${idRaw}@${node}`,
    toNode: node,
    ...base,
  }));
}

/** REQOpCommand {opCmd: ps | startProc | stopProc, opArg} → the op method it stands for. */
function legacyOpCommand(
  operation: unknown,
  fail: (field: string, reason: string) => never,
): { method: MethodName; methodArgs: string[] } {
  if (operation === null || typeof operation !== "object" || Array.isArray(operation)) {
    return fail(
      "operation",
      `REQOpCommand needs "operation": {"opCmd": "ps" | "startProc" | "stopProc", "opArg": {...}}`,
    );
  }
  const { opCmd, opArg } = operation as { opCmd?: unknown; opArg?: Record<string, unknown> };
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  switch (opCmd) {
    case "ps":
      return { method: "opProcessList", methodArgs: [] };
    case "startProc": {
      const nodes = Array.isArray(opArg?.allowedNodes) ? opArg.allowedNodes.map(text).filter(Boolean) : [];
      if (!text(opArg?.method)) return fail("operation.opArg.method", "startProc needs the method to start");
      return { method: "opProcessStart", methodArgs: [text(opArg?.method), ...nodes] };
    }
    case "stopProc":
      if (!text(opArg?.method)) return fail("operation.opArg.method", "stopProc needs the method to stop");
      return {
        method: "opProcessStop",
        methodArgs: [text(opArg?.method), text(opArg?.receivingNode), text(opArg?.kind)],
      };
    default:
      return fail("operation.opCmd", `unknown opCmd ${JSON.stringify(opCmd)}; use "ps", "startProc" or "stopProc"`);
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === "object" || typeof v === "function") return "an object";
  return `${typeof v} ${JSON.stringify(v) ?? "undefined"}`;
}

/**
 * Check a message that came from another node exactly as this node checks its own input (names, methods,
 * arguments, paths, timeouts, schedule): a peer's message never went through this node's parser.
 * Returns the first problem, or undefined.
 */
export function wireMessageProblem(message: Message): string | undefined {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) if (FIELDS.has(key)) fields[key] = value;
  try {
    const [parsed] = toMessages(fields, 0, { ACKTimeout: 0, retries: 0, methodTimeout: 0 });
    // Fields the parser fills in must have arrived filled in: it would have defaulted them, not the sender.
    for (const key of ["replyMethod", "ACKTimeout", "retries", "methodTimeout"] as const) {
      if (fields[key] === undefined) return `field ${key} missing`;
    }
    if (parsed?.method !== message.method) return `method ${message.method} is not a method name as sent on the wire`;
    return undefined;
  } catch (err) {
    if (err instanceof MessageInputError) return err.message.replace(/^message 0(, |: )/, "");
    throw err;
  }
}
