/**
 * Authorization: central's rules on who may call which method on which
 * nodes. Each receiving node checks every message against them, whatever
 * path it came by; a message is allowed when one rule matches it all:
 *
 *   from     who calls: a node name, "group:NAME", or "*" (any admitted node); never a label, which a
 *            node may announce for itself (docs/SECURITY.md, "Labels and groups")
 *   methods  method names (as in messages: "cliCommand", "REQCliCommand"…), or "*"
 *   to       the receiving node: a name, "group:NAME", "label:KEY=VALUE", "self" (the caller itself), or "*"
 *   args     optional, for cliCommand and cliCommandCont: command lines the caller may run, each an
 *            array with one regular expression per argument (matched whole), e.g.
 *            [["systemctl", "status", "[a-z0-9@.-]+"], ["uptime"]]; an entry "group:NAME" stands for every
 *            command line of the rule set's commandGroups[NAME]
 *   unlimited optional, true: what the rule allows may also ask to run without a time limit
 *            (methodTimeout -1). Without it only central, and a node sending to itself, may
 *            (docs/SECURITY.md).
 *
 * Replies are not requests: one is let in only when it answers a request this
 * node sent to its signer (docs/SECURITY.md). The local `startSub…` settings
 * and the op… methods can only narrow what the rules allow, never widen it.
 */
import { canonicalMethod, type MethodName } from "../message/methods.js";

export interface Rule {
  from: string[];
  methods: string[];
  to: string[];
  /** Command lines (one pattern per argument), or "group:NAME" for a group of them. */
  args?: (string[] | string)[];
  /** The caller may ask for no time limit (methodTimeout -1) on what this rule allows. */
  unlimited?: boolean;
}

export interface Acl {
  rules: Rule[];
  /** Named sets of command lines, for rules' args to name as "group:NAME". */
  commandGroups?: Record<string, string[][]>;
}

/** What the rules know of a node: its admitted groups and labels. */
export interface Member {
  name: string;
  groups: readonly string[];
  labels: Readonly<Record<string, string>>;
}

/** A fresh install: central may call everything; any admitted node may say hello, report errors and ping. */
export function defaultAcl(centralNodeName: string): Acl {
  return {
    rules: [
      { from: [centralNodeName], methods: ["*"], to: ["*"] },
      { from: ["*"], methods: ["hello", "errorLog", "ping"], to: ["*"] },
    ],
  };
}

const COMMAND_METHODS: readonly MethodName[] = ["cliCommand", "cliCommandCont"];

/** Why `value` is not a rule set, or undefined when it is one. */
export function aclProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object" || !Array.isArray((value as Acl).rules))
    return 'expected {"rules": [...]}';
  const strings = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === "string" && s !== "");
  for (const key of Object.keys(value)) {
    if (key !== "rules" && key !== "commandGroups")
      return `unknown field "${key}"; a rule set has rules and optional commandGroups`;
  }
  const groups = (value as Acl).commandGroups ?? {};
  if (groups === null || typeof groups !== "object" || Array.isArray(groups))
    return 'commandGroups: expected an object, e.g. {"status": [["systemctl", "status", "[a-z0-9@.-]+"]]}';
  for (const [name, lines] of Object.entries(groups)) {
    const at = `commandGroups.${name}`;
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name))
      return `${at}: a group name uses letters, digits, "-" or "_", starting with a letter or digit`;
    if (!Array.isArray(lines) || lines.length === 0 || !lines.every((line) => strings(line)))
      return `${at}: expected a non-empty array of command lines, each an array of patterns`;
    const bad = patternsProblem(lines);
    if (bad) return `${at}: ${bad}`;
  }
  for (const [i, rule] of (value as Acl).rules.entries()) {
    const at = `rules[${i}]`;
    if (rule === null || typeof rule !== "object") return `${at}: expected an object with from, methods and to`;
    for (const key of Object.keys(rule)) {
      if (!["from", "methods", "to", "args", "unlimited"].includes(key))
        return `${at}: unknown field "${key}"; a rule has from, methods, to and optional args and unlimited`;
    }
    if (rule.unlimited !== undefined && typeof rule.unlimited !== "boolean")
      return `${at}.unlimited: expected true or false`;
    for (const key of ["from", "methods", "to"] as const) {
      if (!strings(rule[key])) return `${at}.${key}: expected a non-empty array of names`;
    }
    for (const m of rule.methods) {
      if (m !== "*" && !canonicalMethod(m)) return `${at}.methods: unknown method "${m}"`;
    }
    const byLabel = rule.from.find((f) => f.startsWith("label:"));
    if (byLabel)
      return `${at}.from: "${byLabel}": a caller is named by node or group:NAME, never by a label (a node may announce labels for itself)`;
    for (const t of rule.to) {
      if (t.startsWith("label:") && !/^label:[^=]+=.*$/.test(t)) return `${at}.to: "${t}" should be label:KEY=VALUE`;
    }
    if (rule.args !== undefined) {
      if (
        !Array.isArray(rule.args) ||
        !rule.args.every((line) => (typeof line === "string" && line.startsWith("group:")) || strings(line))
      )
        return `${at}.args: expected an array of command lines, each an array of patterns, or "group:NAME"`;
      if (!rule.methods.every((m) => COMMAND_METHODS.includes(canonicalMethod(m) as MethodName)))
        return `${at}.args: argument patterns apply to cliCommand and cliCommandCont only`;
      for (const line of rule.args) {
        if (typeof line === "string" && !Object.hasOwn(groups, line.slice(6)))
          return `${at}.args: "${line}" names no group of commandGroups`;
      }
      const bad = patternsProblem(rule.args.filter((line) => typeof line !== "string"));
      if (bad) return `${at}.args: ${bad}`;
    }
  }
  return undefined;
}

function patternsProblem(lines: string[][]): string | undefined {
  for (const line of lines) {
    for (const p of line) {
      try {
        new RegExp(`^(?:${p})$`);
      } catch (err) {
        return (err as Error).message;
      }
    }
  }
  return undefined;
}

function isMember(patterns: readonly string[], m: Member, caller?: Member): boolean {
  return patterns.some((p) => {
    if (p === "*" || p === m.name) return true;
    if (p === "self") return caller !== undefined && caller.name === m.name;
    if (p.startsWith("group:")) return m.groups.includes(p.slice(6));
    if (p.startsWith("label:")) {
      const [key = "", ...value] = p.slice(6).split("=");
      return m.labels[key] === value.join("=");
    }
    return false;
  });
}

function lineMatches(line: readonly string[], args: readonly string[]): boolean {
  return line.length === args.length && line.every((p, i) => new RegExp(`^(?:${p})$`).test(args[i] ?? ""));
}

function argsMatch(acl: Acl, entries: readonly (string[] | string)[], args: readonly string[]): boolean {
  return entries.some((entry) =>
    typeof entry === "string"
      ? (acl.commandGroups?.[entry.slice(6)] ?? []).some((line) => lineMatches(line, args))
      : lineMatches(entry, args),
  );
}

function matches(
  acl: Acl,
  rule: Rule,
  caller: Member,
  method: MethodName,
  target: Member,
  args: readonly string[],
): boolean {
  return (
    isMember(rule.from, caller) &&
    rule.methods.some((m) => m === "*" || canonicalMethod(m) === method) &&
    isMember(rule.to, target, caller) &&
    (rule.args === undefined || argsMatch(acl, rule.args, args))
  );
}

/** Does a rule let `caller` call `method` with `args` on `target`? */
export function allows(acl: Acl, caller: Member, method: MethodName, target: Member, args: readonly string[]): boolean {
  return acl.rules.some((rule) => matches(acl, rule, caller, method, target, args));
}

/** Does a rule with `unlimited: true` let `caller` run `method` with `args` on `target` without a time limit? */
export function allowsNoTimeLimit(
  acl: Acl,
  caller: Member,
  method: MethodName,
  target: Member,
  args: readonly string[],
): boolean {
  return acl.rules.some((rule) => rule.unlimited === true && matches(acl, rule, caller, method, target, args));
}

/** The refusal of a message asking for methodTimeout -1 that no rule grants. */
export function notAllowedUnlimited(caller: string, method: string, target: string, most?: number): string {
  const asked = most === undefined ? "methodTimeout -1" : `methodTimeout above maxMethodTimeout ${most} s there`;
  return `not allowed: ${caller} may not run ${method} on ${target} without a time limit (${asked}); give it a shorter methodTimeout, or a rule with "unlimited": true`;
}

/** The refusal a sender's message ends with. */
export function notAllowed(caller: string, method: string, target: string): string {
  return `not allowed: ${caller} may not call ${method} on ${target}`;
}
