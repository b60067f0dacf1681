/** `steward keys …` and `steward acl …`: central's registry of node keys and its rules. */
import { readFileSync } from "node:fs";
import { query } from "../client/client.js";
import { formatLabels } from "../message/labels.js";
import { parseSettingFlags } from "../node/config.js";
import type { Acl } from "../security/acl.js";
import { clientSocket, labelOptions, takeFlag, takeOption, UsageError } from "./args.js";
import { ago, table } from "./format.js";

export const KEYS_HELP = `Usage: steward keys list [--json]
       steward keys approve NODE [--groups G1,G2] [--labels K=V,K2=V2] [--key PUBLIC_KEY]
       steward keys revoke NODE

Run on central. Every node has a key pair; a new node's public key reaches
central with its first hello and waits there, "pending", until approved.
Until then other nodes drop its messages, and it drops theirs. Approving or
revoking sends every node a new bundle at once (nodes that miss it get it
with their next hello): a revoked node is refused everywhere.

  --groups, --labels  what the rules ("steward acl") can name it by; --labels
                      replaces the labels set here before. A node announces
                      labels of its own (its labels setting, ANNOUNCED):
                      for the same key, the one set here wins
  --key               approve a key given by hand (the node logs it at start)
                      before its hello arrives, or replace a node's key

Compare a pending key with the one the node printed at its first start
("created this node's key pair … publicKey=…") before approving it.
`;

export const ACL_HELP = `Usage: steward acl show [--json]
       steward acl set FILE     (a JSON file: {"rules": [...]}; "-" reads stdin)

Run on central. The rules say who may call which method on which nodes; every
node checks every message against them. A message is allowed when one rule
matches it all:

  {"from": ["central", "group:ops"],      who calls: node, group:NAME, or "*" (any admitted node)
                                          (never a label: a node announces its own)
   "methods": ["cliCommand"],             method names, or "*"
   "to": ["ship1", "label:site=north"],   node, group:NAME, label:KEY=VALUE, "self", or "*"
   "args": [["systemctl", "status", "[a-z-]+"], ["uptime"], "group:disk"]}
                                          optional, cliCommand/cliCommandCont only: the command lines
                                          allowed, one regular expression per argument, matched whole;
                                          "group:NAME" names a group of them:
  "commandGroups": {"disk": [["df", "-h"], ["du", "-sh", "/var/[a-z]+"]]}
                                          beside "rules": command lines by name

A fresh install allows central to call every method, and every admitted node
to send hello, errorLog and ping. Replies need no rule: a node takes a reply
only for a request it sent. Keep the file in git; "steward acl show --json"
prints the rules in force.
`;

export async function keysCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h") || argv.length === 0) {
    process.stdout.write(KEYS_HELP);
    return 0;
  }
  const args = argv.slice();
  const json = takeFlag(args, "json");
  const groups = takeOption(args, "groups").pop();
  const labels = labelOptions(args, "labels");
  const key = takeOption(args, "key").pop();
  const { values, rest } = parseSettingFlags(args);
  const [sub, node, extra] = rest;
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"; see "steward keys --help"`);
  const { path } = clientSocket(values);
  switch (sub) {
    case "list": {
      const answer = await query(path, "keys", {});
      if (json) {
        process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        return 0;
      }
      const rows = answer.keys.map((k) => [
        k.name,
        k.state,
        k.publicKey,
        k.groups.join(",") || "-",
        formatLabels(k.labels) || "-",
        formatLabels(k.announced ?? {}) || "-",
        k.firstSeen ? ago(k.firstSeen) : "-",
      ]);
      process.stdout.write(
        `${table(["NODE", "STATE", "PUBLIC KEY", "GROUPS", "LABELS", "ANNOUNCED", "FIRST SEEN"], rows)}\n`,
      );
      process.stdout.write(`bundle version ${answer.bundle}\n`);
      const pending = answer.keys.filter((k) => k.state === "pending").length;
      if (pending > 0) process.stdout.write(`${pending} pending: steward keys approve NODE\n`);
      return 0;
    }
    case "approve": {
      if (!node) throw new UsageError("steward keys approve NODE");
      const { key: rec } = await query(path, "approve", {
        node,
        ...(groups !== undefined && { groups: list(groups) }),
        ...(labels !== undefined && { labels }),
        ...(key !== undefined && { publicKey: key }),
      });
      process.stdout.write(`approved ${rec.name} (${rec.publicKey}); every node gets the new bundle now\n`);
      return 0;
    }
    case "revoke": {
      if (!node) throw new UsageError("steward keys revoke NODE");
      const { key: rec } = await query(path, "revoke", { node });
      process.stdout.write(`revoked ${rec.name}; every node refuses it once it has the new bundle\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown keys command "${sub ?? ""}"; use list, approve NODE or revoke NODE`);
  }
}

export async function aclCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h") || argv.length === 0) {
    process.stdout.write(ACL_HELP);
    return 0;
  }
  const args = argv.slice();
  const json = takeFlag(args, "json");
  const { values, rest } = parseSettingFlags(args);
  const [sub, file] = rest;
  const { path } = clientSocket(values);
  if (sub === "show") {
    const answer = await query(path, "acl", {});
    process.stdout.write(json ? `${JSON.stringify(answer.acl, null, 2)}\n` : describeRules(answer));
    return 0;
  }
  if (sub === "set") {
    if (!file) throw new UsageError("steward acl set FILE");
    const text = readFileSync(file === "-" ? 0 : file, "utf8");
    let acl: unknown;
    try {
      acl = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`${file} is not JSON: ${(err as Error).message}`);
    }
    const answer = await query(path, "setAcl", { acl: acl as { rules: [] } });
    process.stdout.write(
      `rules set (${answer.acl.rules.length}); bundle version ${answer.bundle} goes to every node now\n`,
    );
    return 0;
  }
  throw new UsageError(`unknown acl command "${sub ?? ""}"; use show or set FILE`);
}

function describeRules({ bundle, acl }: { bundle: number; acl: Acl }): string {
  const lines = acl.rules.map(
    (r, i) =>
      `${i + 1}. ${r.from.join(", ")} may call ${r.methods.join(", ")} on ${r.to.join(", ")}` +
      (r.args
        ? `\n   only: ${r.args.map((line) => (typeof line === "string" ? line : line.join(" "))).join(" | ")}`
        : ""),
  );
  const groups = Object.entries(acl.commandGroups ?? {}).map(
    ([name, group]) => `group:${name} = ${group.map((line) => line.join(" ")).join(" | ")}`,
  );
  return `${[...lines, ...groups].join("\n")}\n(bundle version ${bundle}; anything else is refused)\n`;
}

function list(v: string): string[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}
