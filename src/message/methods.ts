/**
 * Method names: canonical camelCase, and every seed `REQ…` name as an alias.
 */
export const METHOD_NAMES = [
  "cliCommand",
  "cliCommandCont",
  "tailFile",
  "httpGet",
  "console",
  "file",
  "fileAppend",
  "none",
  "ping",
  "pong",
  "hello",
  "errorLog",
  "opProcessList",
  "opProcessStart",
  "opProcessStop",
] as const;

export type MethodName = (typeof METHOD_NAMES)[number];

/**
 * Methods whose run changes nothing on the node, so that running one again
 * after a power cut is invisible: their start need not reach the disk before
 * they run (DESIGN §3.5 marks re-runs so the user sees a side effect twice;
 * these have none). A reply's run on its origin is the same: it records the
 * result, and the request's state shows it once.
 */
export const RUN_TWICE_HARMLESS: readonly MethodName[] = ["ping"];

/** Methods that make sense on the sender for a reply's data. */
export const REPLY_METHODS: readonly MethodName[] = ["fileAppend", "file", "console", "none", "pong"];

const ALIASES: Record<string, MethodName> = {
  REQCliCommand: "cliCommand",
  REQnCliCommand: "cliCommand",
  REQCliCommandCont: "cliCommandCont",
  REQnCliCommandCont: "cliCommandCont",
  REQTailFile: "tailFile",
  REQHttpGet: "httpGet",
  REQToConsole: "console",
  REQToFile: "file",
  REQToFileAppend: "fileAppend",
  REQNone: "none",
  REQPing: "ping",
  REQPong: "pong",
  REQHello: "hello",
  REQErrorLog: "errorLog",
  REQOpProcessList: "opProcessList",
  REQOpProcessStart: "opProcessStart",
  REQOpProcessStop: "opProcessStop",
};

/** The seed name of each method, as in the `startSubREQ…` settings. */
export const SEED_NAMES: Record<MethodName, string> = {
  cliCommand: "REQCliCommand",
  cliCommandCont: "REQCliCommandCont",
  tailFile: "REQTailFile",
  httpGet: "REQHttpGet",
  console: "REQToConsole",
  file: "REQToFile",
  fileAppend: "REQToFileAppend",
  none: "REQNone",
  ping: "REQPing",
  pong: "REQPong",
  hello: "REQHello",
  errorLog: "REQErrorLog",
  opProcessList: "REQOpProcessList",
  opProcessStart: "REQOpProcessStart",
  opProcessStop: "REQOpProcessStop",
};

/** Hellos and error reports are one-way: the receiver sends no reply, so the ACK is their last word. */
export function wantsReply(method: string): boolean {
  return method !== "hello" && method !== "errorLog";
}

export function canonicalMethod(name: string): MethodName | undefined {
  if ((METHOD_NAMES as readonly string[]).includes(name)) return name as MethodName;
  return ALIASES[name];
}

/** Why a method name is refused, with what to use instead. */
export function unknownMethodReason(name: string): string {
  return `unknown method "${name}"; known methods: ${METHOD_NAMES.join(", ")} (seed REQ… names work too)`;
}
