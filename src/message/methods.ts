/**
 * The method catalog: one entry per method, with everything the layers below
 * the methods need to know about it without loading its code — its seed
 * names, what it may be used for, and the check of its arguments. The code
 * itself is one file per method in src/methods/, loaded on first use
 * (src/methods/index.ts). Adding a method: its file there, one entry here and
 * one line in that index.
 */

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
  /** More seed names that mean this method. */
  readonly aliases?: readonly string[];
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

const ENTRIES = {
  cliCommand: { seedName: "REQCliCommand", aliases: ["REQnCliCommand"], checkArgs: needsCommand("cliCommand") },
  cliCommandCont: {
    seedName: "REQCliCommandCont",
    aliases: ["REQnCliCommandCont"],
    checkArgs: needsCommand("cliCommandCont"),
  },
  tailFile: {
    seedName: "REQTailFile",
    checkArgs: (message) =>
      firstArg(message) === ""
        ? { field: "methodArgs", reason: `tailFile needs the file to follow, e.g. ["/var/log/syslog"]` }
        : undefined,
  },
  httpGet: {
    seedName: "REQHttpGet",
    checkArgs: (message) =>
      /^https?:\/\//i.test(firstArg(message))
        ? undefined
        : {
            field: "methodArgs",
            reason: `httpGet needs an http:// or https:// URL as the first element, e.g. ["https://example.com/"]; got ${JSON.stringify(firstArg(message))}`,
          },
  },
  console: { seedName: "REQToConsole", replyMethod: true },
  file: { seedName: "REQToFile", replyMethod: true, checkArgs: relativeDirectory("file") },
  fileAppend: { seedName: "REQToFileAppend", replyMethod: true, checkArgs: relativeDirectory("fileAppend") },
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
  opProcessList: { seedName: "REQOpProcessList", control: true },
  opProcessStart: { seedName: "REQOpProcessStart", control: true },
  opProcessStop: { seedName: "REQOpProcessStop", control: true },
} as const satisfies Record<string, MethodSpec>;

/** A method's canonical (camelCase) name. */
export type MethodName = Extract<keyof typeof ENTRIES, string>;

/** Every method, by canonical name, in the catalog's order (typed so that a defaultReply must name one). */
export const CATALOG: Readonly<Record<MethodName, MethodSpec<MethodName>>> = ENTRIES;

export const METHOD_NAMES = Object.keys(CATALOG) as readonly MethodName[];

/** Canonical names and every seed name → the canonical name. */
const BY_NAME = new Map<string, MethodName>(
  METHOD_NAMES.flatMap((name) => {
    const { seedName, aliases = [] } = CATALOG[name];
    return [name, seedName, ...aliases].map((alias) => [alias, name] as const);
  }),
);

/** The method a name means (canonical or a seed name), or undefined for an unknown name. */
export function canonicalMethod(name: string): MethodName | undefined {
  return BY_NAME.get(name);
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

/** Why a method name is refused, with what to use instead. */
export function unknownMethodReason(name: string): string {
  return `unknown method "${name}"; known methods: ${METHOD_NAMES.join(", ")} (seed REQ… names work too)`;
}

const namesWhere = (flag: (spec: MethodSpec<MethodName>) => boolean | undefined): readonly MethodName[] =>
  METHOD_NAMES.filter((name) => flag(CATALOG[name]));

/** Methods that make sense on the sender for a reply's data. */
export const REPLY_METHODS = namesWhere((spec) => spec.replyMethod);
