/**
 * Input → messages. A document is JSON or YAML, one object or an array of
 * them (decoded by document.ts). Each object's fields are checked here on
 * their own: a bad one gets an error naming its index and field, and the good
 * ones of the same batch still go through. `toNodes` and `toLabels` fan out
 * into one message per node, each with its own id.
 */
import { MessageInputError } from "../errors.js";
import { MAX_SECONDS } from "../timers.js";
import { fromCtrlForm } from "./ctrl.js";
import { parseDocument } from "./document.js";
import { newId } from "./id.js";
import { formatLabels, type Labels, labelsProblem } from "./labels.js";
import type { Envelope, Message } from "./message.js";
import {
  argsProblem,
  canonicalMethod,
  CATALOG,
  defaultReplyMethod,
  type MethodName,
  REPLY_METHODS,
  unknownMethodReason,
} from "./methods.js";
import { badTokenReason, directoryProblem, fileNameProblem } from "./names.js";
import { durationOrTime } from "./when.js";

/** Per-node defaults applied to fields a message leaves out. */
export interface MessageDefaults {
  ACKTimeout: number;
  retries: number;
  methodTimeout: number;
  /** The time of acceptance (ms since the epoch) that deliverBy and runBy in seconds or durations count from. */
  now?: number;
  /** Seconds: the latest deliverBy or runBy a message may ask for, from now (maxDeliverBy). Absent: 30 days. */
  maxDeliverBy?: number;
}

/** The default of maxDeliverBy: 30 days. */
export const MAX_DELIVER_BY = 30 * 24 * 3600;

/**
 * A batch rollout of one input object's messages (its targets): `batch` of them at a time, the next wave
 * only once the last has ended, none after more than `maxErrors` errors (src/delivery/batch.ts).
 */
export interface Rollout {
  /** Messages per wave, or a percentage of the object's targets (rounded down, at least 1). */
  batch: { count: number } | { percent: number };
  /** Errors (failed, expired, or done with a non-zero exit or an error) that stop the rollout once passed; undefined: no limit. */
  maxErrors?: number;
}

/** What the parser asks of the node it runs on; parsing itself stays pure. */
export interface TargetLookup {
  /** The admitted nodes that carry every one of `labels` (from the node's bundle); without it, toLabels is refused. */
  nodesWithLabels?: (labels: Labels) => string[];
}

/** One entry per object of the batch (or one error for a document that did not parse). */
export type ParseOutcome =
  { index: number; messages: Message[]; rollout?: Rollout } | { index: number | undefined; error: MessageInputError };

const FIELDS = new Set([
  "id",
  "toNode",
  "toNodes",
  "toLabels",
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
  "deliverBy",
  "runBy",
  "batch",
  "maxErrors",
  "relayViaNode",
  "relayReplyMethod",
]);

/** Fields whose input form (a time or a duration) differs from their wire form (ms since the epoch). */
const DEADLINES = new Set(["deliverBy", "runBy"]);

/**
 * Parse and check a document. Never throws: a document that does not parse
 * comes back as one error outcome.
 */
export function parseMessages(text: string, defaults: MessageDefaults, lookup: TargetLookup = {}): ParseOutcome[] {
  let raws: unknown[];
  try {
    raws = parseDocument(text);
  } catch (err) {
    return [{ index: undefined, error: err as MessageInputError }];
  }
  return raws.map((raw, index) => {
    try {
      const messages = toMessages(raw, index, defaults, lookup);
      const rollout = rolloutOf(raw as Record<string, unknown>, index);
      return { index, messages, ...(rollout && { rollout }) };
    } catch (err) {
      if (err instanceof MessageInputError) return { index, error: err };
      throw err;
    }
  });
}

/** Check one raw object and fan it out into messages. Throws MessageInputError. */
export function toMessages(
  raw: unknown,
  index: number,
  defaults: MessageDefaults,
  lookup: TargetLookup = {},
): Message[] {
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
  for (const t of targets) {
    const bad = badTokenReason(t);
    if (bad) fail(toNode === t ? "toNode" : "toNodes", `node name ${bad}`);
  }
  if (o.toLabels !== undefined && o.toLabels !== null) {
    for (const n of labelTargets(o.toLabels, lookup, (reason) => fail("toLabels", reason)))
      if (!targets.includes(n)) targets.push(n);
  }
  if (targets.length === 0)
    fail(
      "toNode",
      `missing: say which node runs the method ("toNode": "ship1", "toNodes": [...], or "toLabels": {"role": "web"})`,
    );

  // Methods.
  const methodRaw = str("method");
  if (methodRaw === undefined) return fail("method", `missing: say what to run, e.g. "method": "cliCommand"`);
  // The seeds' legacy REQOpCommand carries its operation in "operation": {opCmd, opArg}.
  const legacy = methodRaw === "REQOpCommand" ? legacyOpCommand(o.operation, fail) : undefined;
  const method = legacy?.method ?? canonicalMethod(methodRaw);
  if (!method) return fail("method", unknownMethodReason(methodRaw));
  // Relay: ctrl's relayReplyMethod is the method the reply is handled with back at the origin; Steward carries
  // the target's one signed reply there unchanged, so it stands for replyMethod (docs/MESSAGES.md, "Relay").
  const relayViaNode = str("relayViaNode") || undefined;
  const relayBad = relayViaNode === undefined ? undefined : badTokenReason(relayViaNode);
  if (relayBad) fail("relayViaNode", `node name ${relayBad}`);
  const relayReplyRaw = str("relayReplyMethod") || undefined;
  if (relayReplyRaw !== undefined && relayViaNode === undefined)
    fail("relayReplyMethod", "is the reply method of a relayed message; name the relay node in relayViaNode");
  const replyRaw = relayReplyRaw ?? str("replyMethod");
  const replyMethod = replyRaw === undefined ? defaultReplyMethod(method) : canonicalMethod(replyRaw);
  if (!replyMethod) return fail("replyMethod", unknownMethodReason(replyRaw ?? ""));
  if (!REPLY_METHODS.includes(replyMethod)) {
    fail(
      relayReplyRaw === undefined ? "replyMethod" : "relayReplyMethod",
      `"${replyRaw}" cannot handle a reply; use one of ${REPLY_METHODS.join(", ")}`,
    );
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

  const deliverBy = deadline(o, "deliverBy", defaults, fail);
  const runBy = deadline(o, "runBy", defaults, fail);

  const ACKTimeout = int("ACKTimeout", defaults.ACKTimeout);
  const retries = int("retries", defaults.retries);
  const methodTimeout = int(
    "methodTimeout",
    CATALOG[method].timeoutFromArgs?.(methodArgs) ?? defaults.methodTimeout,
    -1,
  );
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
    ...(deliverBy !== undefined && { deliverBy }),
    ...(runBy !== undefined && { runBy }),
    ...(relayViaNode !== undefined && { relayViaNode }),
  };
  if (relayViaNode !== undefined && targets.includes(relayViaNode))
    fail("relayViaNode", `is the node that carries the message to toNode; ${relayViaNode} cannot relay to itself`);
  return targets.map((node) => ({
    id: idRaw === undefined ? newId() : targets.length === 1 ? idRaw : `${idRaw}@${node}`,
    toNode: node,
    ...base,
  }));
}

/**
 * deliverBy or runBy as ms since the epoch: given as an ISO 8601 time ("2026-12-01T08:00:00Z"), a number of
 * seconds from now, or a duration from now ("90s", "30m", "12h", "3d"). Refused when already past or further
 * ahead than maxDeliverBy.
 */
function deadline(
  o: Record<string, unknown>,
  field: string,
  defaults: MessageDefaults,
  fail: (field: string, reason: string) => never,
): number | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  const at = defaults.now ?? Date.now();
  const most = defaults.maxDeliverBy ?? MAX_DELIVER_BY;
  const form = `a time like "2026-12-01T08:00:00Z", seconds from now, or a duration like "90s", "30m", "12h", "3d"`;
  let ms: number;
  const when = typeof v === "string" ? durationOrTime(v) : undefined;
  if (typeof v === "number" && Number.isInteger(v)) ms = at + v * 1000;
  else if (when) ms = "at" in when ? when.at : at + when.durationMs;
  else return fail(field, `expected ${form}; got ${describe(v)}`);
  if (ms <= at) return fail(field, `${describe(v)} is already past; give a later time or a duration from now`);
  if (ms > at + most * 1000)
    return fail(
      field,
      `at most ${most} seconds (${(most / 86_400).toFixed(1)} days) ahead (maxDeliverBy), got ${describe(v)}`,
    );
  return ms;
}

/** The object's `batch` and `maxErrors`, checked; undefined when it has no `batch`. Throws MessageInputError. */
export function rolloutOf(o: Record<string, unknown>, index: number): Rollout | undefined {
  const fail = (field: string, reason: string): never => {
    throw new MessageInputError(reason, { index, field });
  };
  const { batch, maxErrors } = o;
  let max: number | undefined;
  if (maxErrors !== undefined && maxErrors !== null) {
    if (typeof maxErrors !== "number" || !Number.isInteger(maxErrors) || maxErrors < 0)
      fail("maxErrors", `expected a whole number, 0 or more, got ${describe(maxErrors)}`);
    max = maxErrors as number;
  }
  if (batch === undefined || batch === null) {
    if (max !== undefined) fail("maxErrors", `only counts in a batch rollout: give "batch" too, e.g. "batch": 2`);
    return undefined;
  }
  const percent = typeof batch === "string" ? /^(\d{1,3})%$/.exec(batch.trim()) : null;
  let size: Rollout["batch"];
  if (typeof batch === "number" && Number.isInteger(batch) && batch >= 1) size = { count: batch };
  else if (percent && Number(percent[1]) >= 1 && Number(percent[1]) <= 100) size = { percent: Number(percent[1]) };
  else
    return fail(
      "batch",
      `expected a number of targets per wave (1 or more) or a percentage of them ("10%"), got ${describe(batch)}`,
    );
  return { batch: size, ...(max !== undefined && { maxErrors: max }) };
}

/** Messages per wave for `targets` targets: a percentage is rounded down, and is at least 1. */
export function waveSize(rollout: Rollout, targets: number): number {
  if ("count" in rollout.batch) return rollout.batch.count;
  return Math.max(1, Math.floor((targets * rollout.batch.percent) / 100));
}

/** The nodes `toLabels` selects: every admitted node that carries all its labels; none is an error. */
function labelTargets(value: unknown, lookup: TargetLookup, fail: (reason: string) => never): string[] {
  const problem = labelsProblem(value);
  if (problem) return fail(problem);
  const labels = value as Labels;
  if (Object.keys(labels).length === 0) return fail('give at least one label, e.g. {"role": "web"}');
  if (!lookup.nodesWithLabels) return fail("this input cannot select nodes by label; name them with toNode or toNodes");
  const nodes = lookup.nodesWithLabels(labels);
  if (nodes.length === 0)
    return fail(`no admitted node has labels ${formatLabels(labels)} (see "steward nodes --label KEY=VALUE")`);
  return nodes;
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
  for (const [key, value] of Object.entries(message)) if (FIELDS.has(key) && !DEADLINES.has(key)) fields[key] = value;
  // On the wire the deadlines are already times (ms since the epoch); the origin's deliverBy is checked by the inbox.
  if (message.runBy !== undefined && !Number.isFinite(message.runBy)) return "field runBy is not a number";
  const given: unknown = (message as Partial<Envelope>).deliverByGiven;
  if (given !== undefined && given !== true) return "field deliverByGiven is not true";
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
