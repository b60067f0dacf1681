/**
 * Settings. Every setting has a flag (`--node-name`, the seeds' `--nodeName`
 * and `-nodeName` work too), an environment variable (`NODE_NAME`) and a key
 * in <CONFIG_FOLDER>/config.json. Precedence: flag > env > file > default.
 * As in the seeds, the file is created with defaults on first start and
 * values given by flag are written back to it, so the next start without
 * flags uses them; deleting the file restores the defaults.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { parseLabelList } from "../message/labels.js";
import { CATALOG, METHOD_NAMES, type MethodName } from "../message/methods.js";
import { badTokenReason } from "../message/names.js";
import { MAX_SECONDS } from "../timers.js";

export function startSubKey(method: MethodName): StartSubKey {
  return `startSub${CATALOG[method].seedName}`;
}

/** `startSubREQCliCommand` etc.: who may use each method here ("*", a comma-separated node list, or "" for off). */
export type StartSubKey = `startSub${string}`;

export interface Config {
  [key: StartSubKey]: string;
  nodeName: string;
  brokerAddress: string;
  centralNodeName: string;
  labels: string;
  configFolder: string;
  socketFolder: string;
  databaseFolder: string;
  subscribersDataFolder: string;
  readFolder: string;
  startupFolder: string;
  tcpListener: string;
  httpListener: string;
  defaultMessageTimeout: number;
  defaultMessageRetries: number;
  defaultMethodTimeout: number;
  startPubREQHello: number;
  errorMessageTimeout: number;
  errorMessageRetries: number;
  natsConnectRetryInterval: number;
  maxMessageSize: number;
  retention: number;
  pruneInterval: number;
  logLevel: string;
  nkeySeedFile: string;
  natsCredsFile: string;
  rootCAPath: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  relayBrokerAddress: string;
  relayNkeySeedFile: string;
  relayNatsCredsFile: string;
  promHostAndPort: string;
  profilingPort: string;
  exposeDataFolder: string;
  auditLogFolder: string;
  auditLogMaxBytes: number;
  centralPublicKey: string;
  pinCentralKey: number;
  autoApproveKeys: number;
  maxMessageAge: number;
  defaultDeliverBy: number;
  defaultRunBy: number;
  maxDeliverBy: number;
  maxConcurrentRuns: number;
  maxMethodTimeout: number;
  maxMessagesPerSender: number;
  maxMessagesPerSenderBurst: number;
  errorReportWindow: number;
  maxErrorReportsWaiting: number;
  errorReportMaxAge: number;
  socketGroup: string;
  maxInputConnections: number;
  maxInputBytes: number;
  httpListenerHosts: string;
  stopGracePeriod: number;
}

type Kind = "string" | "int";
interface Setting {
  key: keyof Config;
  kind: Kind;
  default: () => string | number;
  help: string;
  /** Not stored in config.json (it says where config.json is). */
  notInFile?: boolean;
}

export const SETTINGS: Setting[] = [
  {
    key: "nodeName",
    kind: "string",
    default: () => (hostname().split(".")[0] ?? "node").replace(/[^A-Za-z0-9_-]/g, "-"),
    help: "unique name of this node (no dots or spaces)",
  },
  {
    key: "brokerAddress",
    kind: "string",
    default: () => "nats://127.0.0.1:4222",
    help: "NATS server(s) to connect to, comma-separated",
  },
  {
    key: "centralNodeName",
    kind: "string",
    default: () => "central",
    help: "node that receives hellos and the error log",
  },
  {
    key: "labels",
    kind: "string",
    default: () => "",
    help: "labels this node announces in its hello, e.g. role=web,site=oslo (toLabels and --to-label select by them; labels set on central win)",
  },
  {
    key: "configFolder",
    kind: "string",
    default: () => "./etc",
    help: "folder of config.json (env CONFIG_FOLDER)",
    notInFile: true,
  },
  { key: "socketFolder", kind: "string", default: () => "./tmp", help: "folder of the unix socket steward.sock" },
  { key: "databaseFolder", kind: "string", default: () => "./var/lib", help: "folder of the local SQLite store" },
  {
    key: "subscribersDataFolder",
    kind: "string",
    default: () => "./data",
    help: "folder where methods and replies write files",
  },
  {
    key: "readFolder",
    kind: "string",
    default: () => "./readfolder",
    help: "messages dropped here as files are taken in and removed",
  },
  {
    key: "startupFolder",
    kind: "string",
    default: () => "./startup",
    help: "messages in files here are handed in at every start",
  },
  {
    key: "tcpListener",
    kind: "string",
    default: () => "",
    help: 'host:port to take messages on over TCP (":8888" = loopback); empty = off',
  },
  {
    key: "httpListener",
    kind: "string",
    default: () => "",
    help: "host:port of the HTTP API (POST /messages, GET /messages/:id, GET /nodes); empty = off",
  },
  {
    key: "defaultMessageTimeout",
    kind: "int",
    default: () => 10,
    help: "seconds to wait for an ACK when a message does not say (ACKTimeout)",
  },
  {
    key: "defaultMessageRetries",
    kind: "int",
    default: () => 3,
    help: "re-sends when a message does not say (retries)",
  },
  {
    key: "defaultMethodTimeout",
    kind: "int",
    default: () => 10,
    help: "seconds a method may run when a message does not say (methodTimeout); -1 = no limit",
  },
  { key: "startPubREQHello", kind: "int", default: () => 30, help: "seconds between hellos to central; 0 = no hellos" },
  {
    key: "errorMessageTimeout",
    kind: "int",
    default: () => 10,
    help: "seconds to wait for central's ACK of an error report",
  },
  {
    key: "errorMessageRetries",
    kind: "int",
    default: () => -1,
    help: "re-sends of an error report to central; -1 = until central has it or errorReportMaxAge has passed",
  },
  {
    key: "natsConnectRetryInterval",
    kind: "int",
    default: () => 2,
    help: "seconds between attempts to reach the broker",
  },
  {
    key: "maxMessageSize",
    kind: "int",
    default: () => 64 * 1024 * 1024,
    help: "largest message or reply delivered (above the broker's max_payload it goes in chunks); a method's output past it is cut, with a marker",
  },
  { key: "logLevel", kind: "string", default: () => "info", help: "debug, info, warn or error" },
  {
    key: "nkeySeedFile",
    kind: "string",
    default: () => "",
    help: "nkey seed file to authenticate to the broker with; empty = none",
  },
  {
    key: "natsCredsFile",
    kind: "string",
    default: () => "",
    help: "NATS user credentials file (JWT + nkey seed); empty = none",
  },
  {
    key: "rootCAPath",
    kind: "string",
    default: () => "",
    help: "root CA certificate (PEM) to verify the broker's TLS certificate",
  },
  { key: "tlsCertFile", kind: "string", default: () => "", help: "client certificate (PEM) for TLS to the broker" },
  { key: "tlsKeyFile", kind: "string", default: () => "", help: "key (PEM) of the client certificate" },
  {
    key: "relayBrokerAddress",
    kind: "string",
    default: () => "",
    help: "a second broker this node also joins, to relay messages to the nodes only it reaches there (relayViaNode); empty = none",
  },
  {
    key: "relayNkeySeedFile",
    kind: "string",
    default: () => "",
    help: "nkey seed file for relayBrokerAddress; empty = none (the TLS settings serve both brokers)",
  },
  {
    key: "relayNatsCredsFile",
    kind: "string",
    default: () => "",
    help: "NATS user credentials file for relayBrokerAddress; empty = none",
  },
  {
    key: "promHostAndPort",
    kind: "string",
    default: () => "",
    help: 'host:port of the Prometheus metrics endpoint (":2112" = loopback); empty = off',
  },
  {
    key: "profilingPort",
    kind: "string",
    default: () => "",
    help: "the seeds' Go pprof port: not served by this Node.js version (a warning says so); profile with NODE_OPTIONS=--cpu-prof",
  },
  {
    key: "exposeDataFolder",
    kind: "string",
    default: () => "",
    help: "host:port of a read-only HTTP view of subscribersDataFolder; empty = off",
  },
  {
    key: "auditLogFolder",
    kind: "string",
    default: () => "./var/log",
    help: "folder of audit.log: every message accepted and executed, as JSON lines",
  },
  {
    key: "auditLogMaxBytes",
    kind: "int",
    default: () => 10 * 1024 * 1024,
    help: "size at which audit.log is rotated (5 files are kept)",
  },
  {
    key: "centralPublicKey",
    kind: "string",
    default: () => "",
    help: 'central\'s public key (as "steward keys list" shows it on central); empty = learn it on first contact (pinCentralKey)',
  },
  {
    key: "pinCentralKey",
    kind: "int",
    default: () => 1,
    help: "1 = trust and pin the key of the first bundle from central (logged loudly); 0 = only centralPublicKey",
  },
  {
    key: "autoApproveKeys",
    kind: "int",
    default: () => 0,
    help: 'on central: 1 = admit every new node\'s key at its first hello (labs and demos only); 0 = wait for "steward keys approve"',
  },
  {
    key: "maxMessageAge",
    kind: "int",
    default: () => 7 * 24 * 3600,
    help: "seconds a message may take to be delivered; past it, it expires (and a replayed copy is refused)",
  },
  {
    key: "defaultDeliverBy",
    kind: "int",
    default: () => 0,
    help: "deliverBy (seconds from acceptance) of a message that gives none: it waits that long for an absent target instead of failing once its retries are spent; 0 = none",
  },
  {
    key: "defaultRunBy",
    kind: "int",
    default: () => 0,
    help: "runBy (seconds from acceptance) of a message that gives none: not run when it cannot start by then; 0 = none",
  },
  {
    key: "maxDeliverBy",
    kind: "int",
    default: () => 30 * 24 * 3600,
    help: "latest deliverBy or runBy (seconds from acceptance) a message may ask for; a target keeps its id against replays that long",
  },
  {
    key: "maxConcurrentRuns",
    kind: "int",
    default: () => 0,
    help: "most methods running at once here; the rest wait in arrival order (pings and replies never wait); 0 = 4 × the CPU cores, at least 4",
  },
  {
    key: "maxMethodTimeout",
    kind: "int",
    default: () => 86_400,
    help: 'longest methodTimeout (seconds) another node may ask for here; above it, as for -1, only central or a rule with "unlimited": true',
  },
  {
    key: "maxMessagesPerSender",
    kind: "int",
    // Above what an operator's fan-out or a busy stream sends one node, a third of what a node can store
    // (about 3,000 a second, docs/PERFORMANCE.md): one runaway or stolen node cannot take all of it.
    default: () => 1000,
    help: "messages a second one node may have stored here; over it, it is told to re-send later (no retry spent); 0 = no limit",
  },
  {
    key: "maxMessagesPerSenderBurst",
    kind: "int",
    default: () => 5000,
    help: "messages one node may have stored here at once before maxMessagesPerSender applies",
  },
  {
    key: "errorReportWindow",
    kind: "int",
    default: () => 60,
    help: "seconds in which the same error goes to central once, then once more with how many more like it came",
  },
  {
    key: "maxErrorReportsWaiting",
    kind: "int",
    default: () => 100,
    help: "error reports kept waiting for central; beyond it the oldest are dropped (and counted)",
  },
  {
    key: "errorReportMaxAge",
    kind: "int",
    default: () => 3600,
    help: "seconds an error report may wait for central before it is dropped",
  },
  {
    key: "retention",
    kind: "int",
    default: () => 7 * 24 * 3600,
    help: "seconds a finished message (done, failed, expired, cancelled) stays in the store after it ended; received ids are kept until their deliverBy whatever this says",
  },
  {
    key: "pruneInterval",
    kind: "int",
    default: () => 600,
    help: "seconds between two prunings of the store (finished messages past retention, old dedupe records, keys never approved); also once at start",
  },
  ...METHOD_NAMES.map((m): Setting => ({
    key: startSubKey(m),
    kind: "string",
    default: () => "*",
    help: `nodes allowed to use ${m} here: "*" = all, "central,ship1" = those, "" = no subscriber`,
  })),
  // Local inputs (docs/SECURITY.md, "Local inputs").
  {
    key: "socketGroup",
    kind: "string",
    default: () => "",
    help: "group (name or gid) that may use the socket too (0660 in a 0750 folder); empty = the node's user only",
  },
  {
    key: "maxInputConnections",
    kind: "int",
    default: () => 64,
    help: "connections each input (socket, TCP, HTTP) serves at once; more are refused",
  },
  {
    key: "maxInputBytes",
    kind: "int",
    default: () => 16 * 1024 * 1024,
    help: "largest document one connection or request of the socket, TCP, HTTP or read folder may hand in",
  },
  {
    key: "httpListenerHosts",
    kind: "string",
    default: () => "",
    help: "more names clients may use in the Host header of the HTTP listener (comma-separated); loopback, IP addresses and this host's name always work",
  },
  {
    key: "stopGracePeriod",
    kind: "int",
    default: () => 10,
    help: "seconds a graceful stop (SIGTERM, SIGINT) lets runs in progress finish and their replies go; then they are ended and run again at the next start, marked interrupted; 0 = end them at once",
  },
];

/** nodeName → NODE_NAME, startPubREQHello → START_PUB_REQ_HELLO */
export function envName(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toUpperCase();
}

/** nodeName → node-name, startPubREQHello → start-pub-req-hello */
export function flagName(key: string): string {
  return envName(key).toLowerCase().replace(/_/g, "-");
}

const BY_FLAG = new Map<string, Setting>();
for (const s of SETTINGS) {
  BY_FLAG.set(flagName(s.key), s);
  BY_FLAG.set(s.key.toLowerCase(), s);
}

export interface ParsedFlags {
  values: Partial<Record<keyof Config, string>>;
  rest: string[];
}

/**
 * Read setting flags from argv: --node-name=x, --node-name x, --nodeName=x,
 * -nodeName=x. Arguments that are not settings are left in `rest`.
 */
export function parseSettingFlags(argv: string[]): ParsedFlags {
  const values: ParsedFlags["values"] = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    const setting = m ? (BY_FLAG.get((m[1] as string).toLowerCase()) ?? BY_FLAG.get(m[1] as string)) : undefined;
    if (!m || !setting) {
      rest.push(arg);
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined) throw new ConfigError(setting.key, `--${flagName(setting.key)} needs a value`);
      i++;
    }
    values[setting.key] = value;
  }
  return { values, rest };
}

function coerce(s: Setting, raw: unknown, source: string): string | number {
  if (s.kind === "int") {
    const n = typeof raw === "number" ? raw : Number(String(raw).trim());
    if (!Number.isInteger(n))
      throw new ConfigError(s.key, `expected a whole number, got ${JSON.stringify(raw)} (from ${source})`);
    return n;
  }
  if (typeof raw !== "string")
    throw new ConfigError(s.key, `expected a string, got ${JSON.stringify(raw)} (from ${source})`);
  return raw;
}

/** Where config.json lives, from flags or CONFIG_FOLDER, without touching the disk. */
export function configFolderOf(flags: ParsedFlags["values"], env: NodeJS.ProcessEnv = process.env): string {
  return flags.configFolder ?? (env.CONFIG_FOLDER || "./etc");
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Create config.json and write flags back (a node start); false for CLI clients. */
  persist?: boolean;
}

/** Resolve every setting: flag > env > config file > default. */
export function loadConfig(flags: ParsedFlags["values"], opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const configFolder = configFolderOf(flags, env);
  const file = join(configFolder, "config.json");
  let fromFile: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(
        "configFolder",
        `${file} is not valid JSON (${(err as Error).message}); fix it, or delete it to start from defaults`,
      );
    }
  }
  const config = {} as Record<keyof Config, string | number>;
  for (const s of SETTINGS) {
    if (s.key === "configFolder") {
      config.configFolder = configFolder;
      continue;
    }
    const flag = flags[s.key];
    const envValue = env[envName(s.key)];
    if (flag !== undefined) config[s.key] = coerce(s, flag, `--${flagName(s.key)}`);
    else if (envValue !== undefined && envValue !== "") config[s.key] = coerce(s, envValue, `env ${envName(s.key)}`);
    else if (fromFile[s.key] !== undefined) config[s.key] = coerce(s, fromFile[s.key], file);
    else config[s.key] = s.default();
  }
  const result = config as unknown as Config;
  validate(result);

  if (opts.persist) {
    // First start writes every default; later starts write back only what flags changed.
    const next: Record<string, unknown> = existsSync(file) ? { ...fromFile } : {};
    for (const s of SETTINGS) {
      if (s.notInFile) continue;
      if (!(s.key in next) || flags[s.key] !== undefined)
        next[s.key] = flags[s.key] !== undefined ? result[s.key] : (fromFile[s.key] ?? s.default());
    }
    try {
      mkdirSync(configFolder, { recursive: true });
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`);
      renameSync(tmp, file);
    } catch (err) {
      throw new ConfigError("configFolder", `cannot write ${file}: ${(err as Error).message}`);
    }
  }
  return result;
}

function validate(c: Config): void {
  const bad = badTokenReason(c.nodeName);
  if (bad) throw new ConfigError("nodeName", `node name ${bad}; node names are NATS subject tokens`);
  const badCentral = badTokenReason(c.centralNodeName);
  if (badCentral) throw new ConfigError("centralNodeName", `node name ${badCentral}`);
  try {
    parseLabelList(c.labels);
  } catch (err) {
    throw new ConfigError("labels", `${(err as Error).message} (labels look like role=web,site=oslo)`);
  }
  if (c.errorMessageRetries < -1) throw new ConfigError("errorMessageRetries", "must be -1 (until delivered) or more");
  for (const k of [
    "defaultMessageTimeout",
    "defaultMessageRetries",
    "startPubREQHello",
    "natsConnectRetryInterval",
    "errorMessageTimeout",
  ] as const) {
    if (c[k] < 0) throw new ConfigError(k, `must be 0 or more, got ${c[k]}`);
  }
  for (const k of [
    "defaultMessageTimeout",
    "defaultMethodTimeout",
    "startPubREQHello",
    "natsConnectRetryInterval",
    "errorMessageTimeout",
  ] as const) {
    if (c[k] > MAX_SECONDS) throw new ConfigError(k, `must be at most ${MAX_SECONDS} seconds (about 24 days)`);
  }
  if (c.natsConnectRetryInterval < 1) c.natsConnectRetryInterval = 1;
  if (c.maxMessageAge < 1) throw new ConfigError("maxMessageAge", `must be 1 second or more, got ${c.maxMessageAge}`);
  if (c.maxDeliverBy < 1) throw new ConfigError("maxDeliverBy", `must be 1 second or more, got ${c.maxDeliverBy}`);
  for (const k of ["defaultDeliverBy", "defaultRunBy"] as const) {
    if (c[k] < 0 || c[k] > c.maxDeliverBy)
      throw new ConfigError(k, `must be 0 (none) to maxDeliverBy (${c.maxDeliverBy} seconds), got ${c[k]}`);
  }
  for (const k of ["retention", "pruneInterval"] as const) {
    if (c[k] < 1) throw new ConfigError(k, `must be 1 second or more, got ${c[k]}`);
  }
  if (c.pruneInterval > MAX_SECONDS)
    throw new ConfigError("pruneInterval", `must be at most ${MAX_SECONDS} seconds (about 24 days)`);
  for (const k of ["pinCentralKey", "autoApproveKeys"] as const) {
    if (c[k] !== 0 && c[k] !== 1) throw new ConfigError(k, `must be 0 (off) or 1 (on), got ${c[k]}`);
  }
  if (c.centralPublicKey && !/^[A-Za-z0-9_-]{43}$/.test(c.centralPublicKey))
    throw new ConfigError(
      "centralPublicKey",
      'expected the 43-character key that "steward keys list" shows on central',
    );
  if (c.defaultMethodTimeout < -1) throw new ConfigError("defaultMethodTimeout", "must be -1 (no limit) or more");
  for (const k of ["maxConcurrentRuns", "maxMessagesPerSender"] as const) {
    if (c[k] < 0)
      throw new ConfigError(k, `must be 0 (${k === "maxConcurrentRuns" ? "automatic" : "no limit"}) or more`);
  }
  for (const k of [
    "maxMessagesPerSenderBurst",
    "maxMethodTimeout",
    "errorReportWindow",
    "maxErrorReportsWaiting",
    "errorReportMaxAge",
  ] as const) {
    if (c[k] < 1) throw new ConfigError(k, `must be 1 or more, got ${c[k]}`);
  }
  if (c.errorReportWindow > MAX_SECONDS)
    throw new ConfigError("errorReportWindow", `must be at most ${MAX_SECONDS} seconds`);
  if (!["debug", "info", "warn", "error"].includes(c.logLevel))
    throw new ConfigError("logLevel", `must be debug, info, warn or error, got "${c.logLevel}"`);
  if (c.stopGracePeriod < 0 || c.stopGracePeriod > MAX_SECONDS)
    throw new ConfigError(
      "stopGracePeriod",
      `must be 0 (end runs at once) to ${MAX_SECONDS} seconds, got ${c.stopGracePeriod}`,
    );
  if (c.maxInputConnections < 1)
    throw new ConfigError("maxInputConnections", `must be 1 or more, got ${c.maxInputConnections}`);
  if (c.maxInputBytes < 1024) throw new ConfigError("maxInputBytes", `must be 1024 or more, got ${c.maxInputBytes}`);
  if (c.socketGroup !== "" && !/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(c.socketGroup))
    throw new ConfigError("socketGroup", `expected a group name or gid, got "${c.socketGroup}"`);
}

export function socketPath(c: Pick<Config, "socketFolder">): string {
  return resolve(c.socketFolder, "steward.sock");
}

export function settingsHelp(): string {
  return SETTINGS.map((s) => {
    const d = s.default();
    return `  --${flagName(s.key).padEnd(28)} ${s.help}\n  ${"".padEnd(30)} default ${JSON.stringify(d)}, env ${s.key === "configFolder" ? "CONFIG_FOLDER" : envName(s.key)}`;
  }).join("\n");
}
