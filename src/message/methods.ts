/**
 * The method catalog: one entry per method, with everything the layers below
 * the methods need to know about it without loading its code — its seed
 * names, what it may be used for, and the check of its arguments. The code
 * itself is one file per method in src/methods/, loaded on first use
 * (src/methods/index.ts). Adding a method: its file there, one entry here and
 * one line in that index.
 */
import { badTokenReason, directoryProblem } from "./names.js";

/** The fields of a message an argument check looks at. */
export interface MethodArgs {
  readonly methodArgs: readonly string[];
  readonly directory?: string | undefined;
}

/** Why a message's arguments cannot run its method, and which field is to blame. */
export interface ArgsProblem {
  field: "methodArgs" | "directory";
  reason: string;
}

export interface MethodSpec<Name extends string = string> {
  /** The seed's name, as in the `startSubREQ…` settings; it names the method in a message too. */
  readonly seedName: `REQ${string}`;
  /** More seed names, and ctrl's names, that mean this method. */
  readonly aliases?: readonly string[];
  /**
   * It runs from `methodArgs` (a command, a file, a URL): ctrl's older message files give them as an
   * array in `data`, which parse.ts takes as `methodArgs` for these methods only.
   */
  readonly readsArgs?: boolean;
  /** Usable as a replyMethod: it runs on the sender with the reply's data. */
  readonly replyMethod?: boolean;
  /** The replyMethod a message gets when it names none; fileAppend when this is not set. */
  readonly defaultReply?: Name;
  /** One-way: the receiver sends no reply, so the ACK is the last word. */
  readonly oneWay?: boolean;
  /** A heartbeat: the inbox records it on arrival, never stores or runs it as a message. */
  readonly heartbeat?: boolean;
  /** It carries error reports: its own failures are logged, never reported again (no loops). */
  readonly errorReport?: boolean;
  /** Remote control of the node: opProcessStop cannot stop its subscriber. */
  readonly control?: boolean;
  /**
   * It withdraws an earlier message of its sender on the receiver (docs/DELIVERY.md, "Cancel"): applied on
   * arrival, never run; and, like a reply, it waits for an absent target rather than fail for spent retries.
   */
  readonly cancels?: boolean;
  /**
   * Its run changes nothing on the node, so that running it again after a
   * power cut is invisible: its start need not reach the disk before it runs
   * (re-runs are marked so the user sees a side effect twice; these have
   * none). A reply's run on its origin is the same: it records the result,
   * and the request's state shows it once.
   */
  readonly runTwiceHarmless?: boolean;
  /**
   * The signed frame it arrived in is stored with it, for its method to hand on: copySrc's copyDst messages
   * carry the operator's request as the proof that the operator asked for the copy (docs/SECURITY.md, "Copy").
   */
  readonly keepsFrame?: boolean;
  /**
   * Authorised by the operator's request it carries (a grant), not by central's rules for its sender:
   * copyDst is let in only for a copy an allowed operator asked for (docs/SECURITY.md, "Copy").
   */
  readonly granted?: boolean;
  /** The methodTimeout of a message that names none, from its arguments (copySrc: its maxTime); else the default. */
  readonly timeoutFromArgs?: (methodArgs: readonly string[]) => number | undefined;
  /** Checks a request's arguments; run when a message is accepted and again before it runs. */
  readonly checkArgs?: (message: MethodArgs) => ArgsProblem | undefined;
}

const firstArg = (message: MethodArgs): string => message.methodArgs[0] ?? "";

const needsCommand =
  (method: string) =>
  (message: MethodArgs): ArgsProblem | undefined =>
    firstArg(message) === ""
      ? {
          field: "methodArgs",
          reason: `${method} needs the command as the first element, e.g. ["bash","-c","uptime"]`,
        }
      : undefined;

/** A file or fileAppend request from another node writes inside the receiver's data folder. */
const relativeDirectory =
  (method: string) =>
  (message: MethodArgs): ArgsProblem | undefined =>
    message.directory?.startsWith("/")
      ? {
          field: "directory",
          reason: `a ${method} request writes inside the receiver's data folder: use a relative directory`,
        }
      : undefined;

/**
 * portDst's and portSrc's methodArgs, in ctrl's order: [the other node, the service's host:port on the
 * source node, the address the destination node listens on]. The last may be left out (loopback, the
 * service's port) or be a bare port (loopback).
 */
const portArgs =
  (method: string) =>
  (message: MethodArgs): ArgsProblem | undefined => {
    const [node = "", source = "", listen] = message.methodArgs;
    const example = `e.g. ["ship1", "127.0.0.1:8080", "127.0.0.1:18080"]`;
    if (node === "") return { field: "methodArgs", reason: `${method} needs the other node first, ${example}` };
    if (portAddress(source, "") === undefined || !/.:\d+$/.test(source))
      return { field: "methodArgs", reason: `${method} needs the service's host:port second, ${example}` };
    if (listen !== undefined && portAddress(listen, "") === undefined)
      return { field: "methodArgs", reason: `${method}: the third element is the address to listen on, ${example}` };
    return undefined;
  };

/** "host:port" or "port" (`defaultHost`) → its parts; undefined when it is neither. */
export function portAddress(value: string, defaultHost: string): { host: string; port: number } | undefined {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) return undefined;
  const host = (m[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  return { host: host === "" ? defaultHost : host, port };
}

/**
 * copySrc: [srcPath, dstNode, dstPath, chunkSize, maxTime, mode], ctrl's order; the last three may be empty
 * (a default chunk size, the message's methodTimeout, the source file's mode).
 */
function copySrcArgsProblem(message: MethodArgs): ArgsProblem | undefined {
  const [src = "", dstNode = "", dstPath = "", chunkSize = "", maxTime = "", mode = ""] = message.methodArgs;
  const problem = (reason: string): ArgsProblem => ({ field: "methodArgs", reason: `copySrc ${reason}` });
  if (src === "" || dstNode === "" || dstPath === "")
    return problem(
      `needs [srcPath, dstNode, dstPath, chunkSize, maxTime, mode], e.g. ["/etc/hosts", "ship1", "hosts", "", "", ""]`,
    );
  const badNode = badTokenReason(dstNode);
  if (badNode) return problem(`dstNode ${badNode}`);
  if (directoryProblem(dstPath) || dstPath.endsWith("/"))
    return problem(`dstPath "${dstPath}" must name a file, with no ".." (a copy never climbs above its folder)`);
  if (chunkSize !== "" && !/^[1-9][0-9]{0,9}$/.test(chunkSize)) return problem(`chunkSize "${chunkSize}" is not bytes`);
  if (maxTime !== "" && !/^[0-9]{1,9}$/.test(maxTime)) return problem(`maxTime "${maxTime}" is not seconds`);
  if (mode !== "" && !/^0?[0-7]{3,4}$/.test(mode)) return problem(`mode "${mode}" is not octal, e.g. "0644"`);
  return undefined;
}

/** copyDst: [step, grant, …] (src/methods/copyDst.ts); what the grant allows is checked by the inbox. */
function copyDstArgsProblem(message: MethodArgs): ArgsProblem | undefined {
  const [step = "", grant = ""] = message.methodArgs;
  if (!["status", "finish", "abandon"].includes(step) || grant === "")
    return { field: "methodArgs", reason: `copyDst is sent by copySrc, with its step and grant` };
  return undefined;
}

const ENTRIES = {
  cliCommand: {
    seedName: "REQCliCommand",
    aliases: ["REQnCliCommand"],
    readsArgs: true,
    checkArgs: needsCommand("cliCommand"),
  },
  cliCommandCont: {
    seedName: "REQCliCommandCont",
    aliases: ["REQnCliCommandCont"],
    readsArgs: true,
    checkArgs: needsCommand("cliCommandCont"),
  },
  tailFile: {
    seedName: "REQTailFile",
    readsArgs: true,
    checkArgs: (message) =>
      firstArg(message) === ""
        ? { field: "methodArgs", reason: `tailFile needs the file to follow, e.g. ["/var/log/syslog"]` }
        : undefined,
  },
  httpGet: {
    seedName: "REQHttpGet",
    readsArgs: true,
    checkArgs: (message) =>
      /^https?:\/\//i.test(firstArg(message))
        ? undefined
        : {
            field: "methodArgs",
            reason: `httpGet needs an http:// or https:// URL as the first element, e.g. ["https://example.com/"]; got ${JSON.stringify(firstArg(message))}`,
          },
  },
  console: { seedName: "REQToConsole", aliases: ["toConsole"], replyMethod: true },
  // ctrl's toFileNACK wrote without an ACK; here every reply is ACKed, so it is file.
  file: {
    seedName: "REQToFile",
    aliases: ["toFile", "REQToFileNACK", "toFileNACK"],
    replyMethod: true,
    checkArgs: relativeDirectory("file"),
  },
  fileAppend: {
    seedName: "REQToFileAppend",
    aliases: ["toFileAppend"],
    replyMethod: true,
    checkArgs: relativeDirectory("fileAppend"),
  },
  none: { seedName: "REQNone", replyMethod: true },
  ping: { seedName: "REQPing", defaultReply: "pong", runTwiceHarmless: true },
  pong: { seedName: "REQPong", replyMethod: true },
  hello: { seedName: "REQHello", oneWay: true, heartbeat: true },
  errorLog: { seedName: "REQErrorLog", oneWay: true, errorReport: true },
  cancel: {
    seedName: "REQCancel",
    oneWay: true,
    cancels: true,
    checkArgs: (message) =>
      firstArg(message) === ""
        ? { field: "methodArgs", reason: `cancel needs the id of the message to cancel, e.g. ["01J…"]` }
        : undefined,
  },
  portDst: { seedName: "REQPortDst", readsArgs: true, checkArgs: portArgs("portDst") },
  portSrc: { seedName: "REQPortSrc", readsArgs: true, checkArgs: portArgs("portSrc") },
  copySrc: {
    seedName: "REQCopySrc",
    readsArgs: true,
    keepsFrame: true,
    // ctrl's copy runs for its maxTime: a file written for ctrl gives no methodTimeout of its own.
    timeoutFromArgs: (args) => (/^[1-9][0-9]{0,8}$/.test(args[4] ?? "") ? Number(args[4]) : undefined),
    checkArgs: copySrcArgsProblem,
  },
  copyDst: { seedName: "REQCopyDst", granted: true, checkArgs: copyDstArgsProblem },
  opProcessList: { seedName: "REQOpProcessList", control: true },
  opProcessStart: { seedName: "REQOpProcessStart", readsArgs: true, control: true },
  opProcessStop: { seedName: "REQOpProcessStop", readsArgs: true, control: true },
} as const satisfies Record<string, MethodSpec>;

/** A method's canonical (camelCase) name. */
export type MethodName = Extract<keyof typeof ENTRIES, string>;

/** Every method, by canonical name, in the catalog's order (typed so that a defaultReply must name one). */
export const CATALOG: Readonly<Record<MethodName, MethodSpec<MethodName>>> = ENTRIES;

export const METHOD_NAMES = Object.keys(CATALOG) as readonly MethodName[];

/** Every name a method goes by: canonical, seed and ctrl names. */
export function methodNames(name: MethodName): readonly string[] {
  const { seedName, aliases = [] } = CATALOG[name];
  return [name, seedName, ...aliases];
}

/**
 * Every name → the canonical name. ctrl's message files spell names in any case (`toconsole`,
 * `REQTOFILE`), so a name is looked up as given, then in lower case; no two names may then collide.
 */
const BY_NAME = new Map<string, MethodName>();
const BY_LOWER_CASE = new Map<string, MethodName>();
for (const name of METHOD_NAMES) {
  for (const alias of methodNames(name)) {
    const earlier = BY_LOWER_CASE.get(alias.toLowerCase());
    if (earlier !== undefined && earlier !== name) throw new Error(`method name ${alias} means two methods`);
    BY_NAME.set(alias, name);
    BY_LOWER_CASE.set(alias.toLowerCase(), name);
  }
}

/** The method a name means (canonical, seed or ctrl name, in any case), or undefined for an unknown name. */
export function canonicalMethod(name: string): MethodName | undefined {
  return BY_NAME.get(name) ?? BY_LOWER_CASE.get(name.toLowerCase());
}

/** The catalog entry of a canonical name; undefined for anything else (a peer may send any text). */
export function methodSpec(name: string): MethodSpec<MethodName> | undefined {
  return Object.hasOwn(CATALOG, name) ? CATALOG[name as MethodName] : undefined;
}

/** The replyMethod of a message that names none. */
export function defaultReplyMethod(method: MethodName): MethodName {
  return CATALOG[method].defaultReply ?? "fileAppend";
}

/** What is wrong with a request's arguments for its method, or undefined when it can run. */
export function argsProblem(method: MethodName, message: MethodArgs): ArgsProblem | undefined {
  return CATALOG[method].checkArgs?.(message);
}

/** Whether the receiver of a method sends a reply (not for one-way methods: hello, errorLog). */
export function wantsReply(method: string): boolean {
  return !methodSpec(method)?.oneWay;
}

/**
 * ctrl's methods that this version does not have, by their name in lower case without `REQ`: a message
 * file written for ctrl that names one is told so plainly, not that the name is unknown.
 */
const NOT_YET: Readonly<Record<string, string>> = {
  subcopysrc: "ctrl's internal step of a copy (use copySrc)",
  subcopydst: "ctrl's internal step of a copy (use copySrc)",
  httpgetscheduled: 'httpGetScheduled (use httpGet with "schedule": [interval, total])',
  publickey: "ctrl's key exchange (keys are managed with steward keys)",
  keysrequestupdate: "ctrl's key exchange (keys are managed with steward keys)",
  keysdeliverupdate: "ctrl's key exchange (keys are managed with steward keys)",
  keysallow: "ctrl's key exchange (keys are managed with steward keys)",
  keysdelete: "ctrl's key exchange (keys are managed with steward keys)",
};

/** Why a method name is refused, with what to use instead. */
export function unknownMethodReason(name: string): string {
  const ctrlOnly = NOT_YET[name.toLowerCase().replace(/^req/, "")];
  if (ctrlOnly !== undefined) return `${name}: ${ctrlOnly} is not supported by this version`;
  if (/^(req)?relay(initial)?$/i.test(name))
    return `${name}: ctrl's internal relay step, not a method to send; name the relay node in relayViaNode on the message`;
  if (/^(req)?acl/i.test(name))
    return `${name}: ctrl's ACL methods are not supported by this version (central's rules are managed with steward acl)`;
  return `unknown method "${name}"; known methods: ${METHOD_NAMES.join(", ")} (seed REQ… and ctrl names work too)`;
}

const namesWhere = (flag: (spec: MethodSpec<MethodName>) => boolean | undefined): readonly MethodName[] =>
  METHOD_NAMES.filter((name) => flag(CATALOG[name]));

/** Methods that make sense on the sender for a reply's data. */
export const REPLY_METHODS = namesWhere((spec) => spec.replyMethod);
