/**
 * Settings (docs/SETTINGS.md): a flag (kebab, the seeds' camelCase, Go-style single
 * dash), an environment variable and a key in <CONFIG_FOLDER>/config.json.
 * Precedence flag > env > file > default; config.json is created with the
 * defaults on first start, flag values are written back, deleting it
 * restores the defaults. loadConfig is driven directly with temp folders and
 * an explicit env; one real `steward start` checks the same end to end.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { health } from "../src/client/client.js";
import { ConfigError } from "../src/errors.js";
import { sleepUntil, STEWARD_BIN } from "../src/harness/fleet.js";
import { type Config, envName, flagName, loadConfig, parseSettingFlags, SETTINGS } from "../src/node/config.js";
import { cleanEnv, runCli } from "./helpers/cli-helpers.js";

const root = mkdtempSync(join(tmpdir(), "steward-test-config-"));
after(() => {
  if (!process.env.KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
});

let n = 0;
/** A fresh folder for config.json, and an env that points at it. */
function fresh(extraEnv: Record<string, string> = {}): { folder: string; file: string; env: NodeJS.ProcessEnv } {
  const folder = join(root, `etc-${++n}`);
  return { folder, file: join(folder, "config.json"), env: { CONFIG_FOLDER: folder, ...extraEnv } };
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
}

const defaultOf = (key: keyof Config) => (SETTINGS.find((s) => s.key === key) as (typeof SETTINGS)[number]).default();

describe("flags", () => {
  const spellings: [string, string[]][] = [
    ["kebab with =", ["--node-name=x1"]],
    ["kebab, value as the next argument", ["--node-name", "x1"]],
    ["seed camelCase", ["--nodeName=x1"]],
    ["seed camelCase, value next", ["--nodeName", "x1"]],
    ["Go-style single dash", ["-nodeName=x1"]],
    ["Go-style single dash, value next", ["-nodeName", "x1"]],
    ["single dash kebab", ["-node-name=x1"]],
  ];
  for (const [what, argv] of spellings) {
    test(`${what}: ${argv.join(" ")}`, () => {
      const { values, rest } = parseSettingFlags(argv);
      assert.equal(values.nodeName, "x1");
      assert.deepEqual(rest, []);
    });
  }

  test("every setting has a kebab and a camelCase flag", () => {
    for (const s of SETTINGS) {
      assert.equal(parseSettingFlags([`--${flagName(s.key)}=v`]).values[s.key], "v", `--${flagName(s.key)}`);
      assert.equal(parseSettingFlags([`--${s.key}=v`]).values[s.key], "v", `--${s.key}`);
      assert.equal(parseSettingFlags([`-${s.key}=v`]).values[s.key], "v", `-${s.key}`);
    }
  });

  test("startPubREQHello is --start-pub-req-hello", () => {
    assert.equal(flagName("startPubREQHello"), "start-pub-req-hello");
    assert.equal(parseSettingFlags(["--start-pub-req-hello=5"]).values.startPubREQHello, "5");
    assert.equal(parseSettingFlags(["--startPubREQHello", "6"]).values.startPubREQHello, "6");
  });

  test("a value with = and spaces is kept whole", () => {
    assert.equal(
      parseSettingFlags(["--broker-address=nats://a:1,nats://b:2"]).values.brokerAddress,
      "nats://a:1,nats://b:2",
    );
    assert.equal(parseSettingFlags(["--socket-folder=/tmp/a b=c"]).values.socketFolder, "/tmp/a b=c");
  });

  test("arguments that are not settings are left in rest, in order", () => {
    const { values, rest } = parseSettingFlags(["--wait", "--node-name=a", "file.json", "--no-such-thing=1"]);
    assert.deepEqual(values, { nodeName: "a" });
    assert.deepEqual(rest, ["--wait", "file.json", "--no-such-thing=1"]);
  });

  test("the last of a repeated flag wins", () => {
    assert.equal(parseSettingFlags(["--node-name=a", "--nodeName=b"]).values.nodeName, "b");
  });

  test("a flag at the end without a value is an error naming the setting", () => {
    assert.throws(
      () => parseSettingFlags(["--node-name"]),
      (err: unknown) => err instanceof ConfigError && err.setting === "nodeName" && /needs a value/.test(err.message),
    );
  });
});

describe("environment variables", () => {
  test("names: NODE_NAME, START_PUB_REQ_HELLO, BROKER_ADDRESS, DEFAULT_MESSAGE_TIMEOUT", () => {
    assert.equal(envName("nodeName"), "NODE_NAME");
    assert.equal(envName("startPubREQHello"), "START_PUB_REQ_HELLO");
    assert.equal(envName("brokerAddress"), "BROKER_ADDRESS");
    assert.equal(envName("defaultMessageTimeout"), "DEFAULT_MESSAGE_TIMEOUT");
    assert.equal(envName("natsConnectRetryInterval"), "NATS_CONNECT_RETRY_INTERVAL");
  });

  test("every setting is read from its environment variable", () => {
    // A valid value that differs from the default, per setting: the test follows SETTINGS as it grows.
    const special: Record<string, string> = {
      nodeName: "envnode",
      centralNodeName: "hq",
      logLevel: "debug",
      defaultMethodTimeout: "-1",
      // Switches: 0 or 1, each the one that is not its default.
      pinCentralKey: "0",
      autoApproveKeys: "1",
      centralPublicKey: "MyjsFKS7DnabQOLt1s8YdMpgLLyIpuC5Qn5K-BRnsm8",
      maxInputBytes: "2048",
      socketGroup: "0",
      httpListenerHosts: "steward.example",
      labels: "role=web,site=oslo",
    };
    const wanted = new Map<string, string | number>();
    const vars: Record<string, string> = {};
    for (const s of SETTINGS) {
      if (s.key === "configFolder") continue;
      const raw =
        special[s.key] ?? (s.kind === "int" ? "7" : s.key.startsWith("startSub") ? "central,ship1" : `/env/${s.key}`);
      vars[envName(s.key)] = raw;
      wanted.set(s.key, s.kind === "int" ? Number(raw) : raw);
    }
    const { env } = fresh(vars);
    const c = loadConfig({}, { env }) as unknown as Record<string, unknown>;
    for (const [key, value] of wanted) assert.equal(c[key], value, `${key} from ${envName(key)}`);
    assert.ok(wanted.size >= 40, `all settings covered (${wanted.size})`);
  });

  test("CONFIG_FOLDER says where config.json is", () => {
    const { folder, file, env } = fresh();
    mkdirSync(folder, { recursive: true });
    writeFileSync(file, JSON.stringify({ nodeName: "fromfile" }));
    const c = loadConfig({}, { env });
    assert.equal(c.configFolder, folder);
    assert.equal(c.nodeName, "fromfile");
  });

  test("an empty environment variable counts as not set", () => {
    const { env } = fresh({ NODE_NAME: "" });
    assert.equal(loadConfig({}, { env }).nodeName, defaultOf("nodeName"));
  });
});

describe("precedence: flag > env > file > default", () => {
  function withFile(values: Record<string, unknown>, extraEnv: Record<string, string> = {}) {
    const f = fresh(extraEnv);
    mkdirSync(f.folder, { recursive: true });
    writeFileSync(f.file, JSON.stringify(values));
    return f;
  }

  test("default when nothing says otherwise", () => {
    const { env } = fresh();
    const c = loadConfig({}, { env });
    for (const s of SETTINGS) {
      if (s.key === "configFolder") continue;
      assert.deepEqual(c[s.key], s.default(), s.key);
    }
  });

  test("file over default", () => {
    const { env } = withFile({ nodeName: "filenode", startPubREQHello: 9 });
    const c = loadConfig({}, { env });
    assert.equal(c.nodeName, "filenode");
    assert.equal(c.startPubREQHello, 9);
  });

  test("env over file", () => {
    const { env } = withFile(
      { nodeName: "filenode", startPubREQHello: 9 },
      { NODE_NAME: "envnode", START_PUB_REQ_HELLO: "4" },
    );
    const c = loadConfig({}, { env });
    assert.equal(c.nodeName, "envnode");
    assert.equal(c.startPubREQHello, 4);
  });

  test("flag over env and file", () => {
    const { env } = withFile(
      { nodeName: "filenode", startPubREQHello: 9 },
      { NODE_NAME: "envnode", START_PUB_REQ_HELLO: "4" },
    );
    const c = loadConfig(parseSettingFlags(["--node-name=flagnode", "-startPubREQHello=2"]).values, { env });
    assert.equal(c.nodeName, "flagnode");
    assert.equal(c.startPubREQHello, 2);
  });

  test("each setting is resolved on its own", () => {
    const { env } = withFile(
      { nodeName: "filenode", centralNodeName: "filecentral", logLevel: "warn" },
      { CENTRAL_NODE_NAME: "envcentral" },
    );
    const c = loadConfig({ logLevel: "error" }, { env });
    assert.equal(c.nodeName, "filenode");
    assert.equal(c.centralNodeName, "envcentral");
    assert.equal(c.logLevel, "error");
    assert.equal(c.brokerAddress, defaultOf("brokerAddress"));
  });

  test("--config-folder over CONFIG_FOLDER", () => {
    const a = withFile({ nodeName: "in-a" });
    const b = withFile({ nodeName: "in-b" });
    const c = loadConfig({ configFolder: b.folder }, { env: a.env });
    assert.equal(c.configFolder, b.folder);
    assert.equal(c.nodeName, "in-b");
  });
});

describe("config.json written back (persist)", () => {
  test("created with every default on first start", () => {
    const { file, env } = fresh();
    assert.ok(!existsSync(file));
    loadConfig({}, { env, persist: true });
    const written = readJson(file);
    for (const s of SETTINGS) {
      if (s.key === "configFolder") continue;
      assert.deepEqual(written[s.key], s.default(), `${s.key} written with its default`);
    }
  });

  test("flag values are written back; a later start without flags uses them; deleting the file restores defaults", () => {
    const { file, env } = fresh();
    loadConfig(parseSettingFlags(["--node-name=ship7", "--start-pub-req-hello", "5", "-logLevel=warn"]).values, {
      env,
      persist: true,
    });
    const written = readJson(file);
    assert.equal(written.nodeName, "ship7");
    assert.equal(written.startPubREQHello, 5, "an int setting is written as a number");
    assert.equal(written.logLevel, "warn");
    assert.equal(written.brokerAddress, defaultOf("brokerAddress"), "the others with their defaults");

    const later = loadConfig({}, { env, persist: true });
    assert.equal(later.nodeName, "ship7");
    assert.equal(later.startPubREQHello, 5);
    assert.equal(later.logLevel, "warn");
    assert.equal(readJson(file).nodeName, "ship7", "a start without flags keeps what is in the file");

    const changed = loadConfig({ startPubREQHello: "8" }, { env, persist: true });
    assert.equal(changed.nodeName, "ship7", "a flag for one setting leaves the others");
    assert.equal(readJson(file).startPubREQHello, 8);
    assert.equal(readJson(file).nodeName, "ship7");

    unlinkSync(file);
    const reset = loadConfig({}, { env, persist: true });
    assert.equal(reset.nodeName, defaultOf("nodeName"));
    assert.equal(reset.startPubREQHello, defaultOf("startPubREQHello"));
    assert.equal(reset.logLevel, "info");
  });

  test("env values are used but not written to the file", () => {
    const { file, env } = fresh({ NODE_NAME: "envonly" });
    assert.equal(loadConfig({}, { env, persist: true }).nodeName, "envonly");
    assert.equal(readJson(file).nodeName, defaultOf("nodeName"));
  });

  test("a client load (persist: false) writes nothing", () => {
    const { file, env } = fresh();
    loadConfig({ nodeName: "client" }, { env, persist: false });
    assert.ok(!existsSync(file));
  });

  test("configFolder is not a key of config.json (it says where the file is)", () => {
    const { file, env } = fresh();
    loadConfig({}, { env, persist: true });
    assert.ok(!("configFolder" in readJson(file)));
  });
});

describe("invalid settings are refused, naming the setting", () => {
  const refusesWith = (setting: string, pattern?: RegExp) => (err: unknown) => {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
    assert.equal(err.setting, setting);
    assert.match(err.message, new RegExp(setting));
    if (pattern) assert.match(err.message, pattern);
    return true;
  };

  for (const [what, name] of [
    ["a dot", "ship.1"],
    ["a space", "ship 1"],
    ['"*"', "ship*"],
    ['">"', "ship>"],
  ] as const) {
    test(`nodeName with ${what} (flag)`, () => {
      const { env, file } = fresh();
      assert.throws(() => loadConfig({ nodeName: name }, { env, persist: true }), refusesWith("nodeName"));
      assert.ok(!existsSync(file), "nothing written for a refused start");
    });
  }

  test("nodeName with a dot from env and from the file", () => {
    assert.throws(() => loadConfig({}, { env: fresh({ NODE_NAME: "a.b" }).env }), refusesWith("nodeName", /dot/));
    const f = fresh();
    mkdirSync(f.folder, { recursive: true });
    writeFileSync(f.file, JSON.stringify({ nodeName: "a.b" }));
    assert.throws(() => loadConfig({}, { env: f.env }), refusesWith("nodeName", /dot/));
  });

  test("centralNodeName with a dot", () => {
    assert.throws(() => loadConfig({ centralNodeName: "hq.x" }, { env: fresh().env }), refusesWith("centralNodeName"));
  });

  test("a whole number setting given text", () => {
    assert.throws(
      () => loadConfig({ startPubREQHello: "often" }, { env: fresh().env }),
      refusesWith("startPubREQHello", /often/),
    );
    assert.throws(
      () => loadConfig({}, { env: fresh({ DEFAULT_MESSAGE_RETRIES: "3.5" }).env }),
      refusesWith("defaultMessageRetries"),
    );
  });

  test("a wrong type in config.json names the setting and the file", () => {
    const f = fresh();
    mkdirSync(f.folder, { recursive: true });
    writeFileSync(f.file, JSON.stringify({ defaultMessageTimeout: "soon" }));
    assert.throws(
      () => loadConfig({}, { env: f.env }),
      (err: unknown) => {
        refusesWith("defaultMessageTimeout")(err);
        assert.match((err as Error).message, /config\.json/);
        return true;
      },
    );
  });

  test("a config.json that is not JSON says how to recover", () => {
    const f = fresh();
    mkdirSync(f.folder, { recursive: true });
    writeFileSync(f.file, "{ nodeName: ");
    assert.throws(
      () => loadConfig({}, { env: f.env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /config\.json/);
        assert.match(err.message, /delete it|fix it/);
        return true;
      },
    );
  });

  test("negative timeouts and an unknown log level", () => {
    assert.throws(
      () => loadConfig({ defaultMessageTimeout: "-1" }, { env: fresh().env }),
      refusesWith("defaultMessageTimeout"),
    );
    assert.throws(
      () => loadConfig({ defaultMethodTimeout: "-2" }, { env: fresh().env }),
      refusesWith("defaultMethodTimeout"),
    );
    assert.equal(
      loadConfig({ defaultMethodTimeout: "-1" }, { env: fresh().env }).defaultMethodTimeout,
      -1,
      "-1 = no limit is fine",
    );
    assert.throws(() => loadConfig({ logLevel: "loud" }, { env: fresh().env }), refusesWith("logLevel"));
  });
});

describe("steward start (the real executable)", () => {
  const children = new Set<ChildProcess>();
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
  });

  /** Start a node in `cwd` with an unreachable broker; resolves once its socket answers. */
  async function startNode(
    cwd: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<{ child: ChildProcess; node: string; log: () => string }> {
    let log = "";
    const child = spawn(process.execPath, [STEWARD_BIN, "start", ...args], {
      cwd,
      env: cleanEnv({ BROKER_ADDRESS: "nats://127.0.0.1:1", ...env }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      log += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      log += d;
    });
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    let node = "";
    await sleepUntil(
      async () => {
        if (exited) throw new Error(`steward start exited early:\n${log}`);
        node = (await health(join(cwd, "tmp", "steward.sock"))).node;
        return true;
      },
      { timeoutMs: 15_000, what: () => `the node in ${cwd} to answer on its socket (exited: ${exited})\n${log}` },
    ).catch((err) => {
      if (exited) throw new Error(`steward start exited early:\n${log}`);
      throw err;
    });
    return { child, node, log: () => log };
  }

  async function stop(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return child.exitCode;
    const code = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    child.kill("SIGTERM");
    const c = await code;
    children.delete(child);
    return c;
  }

  test("first start writes ./etc/config.json with flags and defaults; later starts use it; env beats it; deleting it restores defaults", async () => {
    const cwd = join(root, "real-node");
    mkdirSync(cwd, { recursive: true });
    const file = join(cwd, "etc", "config.json");

    const first = await startNode(cwd, ["--node-name=cfgnode", "-startPubREQHello=0"]);
    assert.equal(first.node, "cfgnode");
    const written = readJson(file);
    assert.equal(written.nodeName, "cfgnode");
    assert.equal(written.startPubREQHello, 0);
    assert.equal(written.centralNodeName, "central");
    assert.equal(written.defaultMessageTimeout, defaultOf("defaultMessageTimeout"));
    assert.equal(written.brokerAddress, defaultOf("brokerAddress"), "the env broker address is not written back");
    assert.equal(await stop(first.child), 0, "a graceful stop exits 0");

    const second = await startNode(cwd, []);
    assert.equal(second.node, "cfgnode", "no flags: the name from config.json");
    await stop(second.child);

    const third = await startNode(cwd, [], { NODE_NAME: "envnode" });
    assert.equal(third.node, "envnode", "env over the file");
    await stop(third.child);
    assert.equal(readJson(file).nodeName, "cfgnode");

    unlinkSync(file);
    const fourth = await startNode(cwd, []);
    assert.equal(fourth.node, defaultOf("nodeName"), "file deleted: back to the default name");
    await stop(fourth.child);
    assert.equal(readJson(file).nodeName, defaultOf("nodeName"));
  });

  test("--help lists every setting with its default and its environment variable", async () => {
    const r = await runCli(["start", "--help"], { cwd: root });
    assert.equal(r.code, 0, r.stderr);
    const settings = r.stdout.slice(r.stdout.indexOf("Settings:"));
    for (const s of SETTINGS) {
      const flag = `--${flagName(s.key)}`;
      const at = settings.search(new RegExp(`^[ \\t]+${flag}[ \\t]`, "m"));
      assert.ok(at >= 0, `${flag} is listed under Settings`);
      const fromFlag = settings.slice(at);
      const next = fromFlag.search(/\n[ \t]+--/);
      const block = next < 0 ? fromFlag : fromFlag.slice(0, next);
      const env = s.key === "configFolder" ? "CONFIG_FOLDER" : envName(s.key);
      assert.ok(block.includes(env), `${flag} names env ${env}`);
      assert.ok(
        block.includes(`default ${JSON.stringify(s.default())}`),
        `${flag} shows its default ${JSON.stringify(s.default())}`,
      );
    }
    assert.match(r.stdout, /flag > env > config file > default/);
  });

  test("an unknown flag exits non-zero and says what to do", async () => {
    const cwd = join(root, "bad-flag");
    mkdirSync(cwd, { recursive: true });
    const r = await runCli(["start", "--no-such-setting=1"], { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--no-such-setting/);
    assert.match(r.stderr, /--help/);
    assert.ok(!existsSync(join(cwd, "etc", "config.json")), "nothing written");
    assert.ok(!existsSync(join(cwd, "tmp", "steward.sock")), "no node started");
  });

  test("a node name with a dot exits non-zero naming the setting; nothing is started or written", async () => {
    const cwd = join(root, "bad-name");
    mkdirSync(cwd, { recursive: true });
    const r = await runCli(["start", "--node-name=ship.one"], { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nodeName/);
    assert.match(r.stderr, /dot/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "a message, not a stack trace");
    assert.ok(!existsSync(join(cwd, "etc", "config.json")));
  });

  test("a bad number exits non-zero naming the setting and the value", async () => {
    const cwd = join(root, "bad-int");
    mkdirSync(cwd, { recursive: true });
    const r = await runCli(["start", "--start-pub-req-hello=often"], { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /startPubREQHello/);
    assert.match(r.stderr, /often/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test("a flag without its value exits non-zero saying so", async () => {
    const r = await runCli(["start", "--node-name"], { cwd: root });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--node-name needs a value/);
  });
});
