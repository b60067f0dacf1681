/**
 * The flags that pick messages, for every command that acts on a set of them (`steward status`, and
 * commands that change them): --to, --state, --method, --since. See MessageFilter (src/message/filter.ts).
 */
import { MESSAGE_STATES, type MessageFilter, parseStates, parseWhen } from "../message/filter.js";
import type { MessageState } from "../message/message.js";
import { takeOption, UsageError } from "./args.js";

/** The help lines of the filter flags, to put in a command's help text. */
export const FILTER_HELP = `  --to NODE            sent to NODE (repeat for more nodes)
  --state S[,S]        in one of these states (repeatable):
                       ${MESSAGE_STATES.join(", ")}
  --method M           calling method M (repeatable, or M,M)
  --since WHEN         changed since WHEN: a time back from now (90s, 30m, 12h, 3d) or an ISO
                       time (2026-11-29T08:00:00Z); that is every message sent since then, and
                       older ones whose state moved since`;

/**
 * Take the filter flags out of `args` (as takeOption does); the rest stays for the command.
 * Throws a UsageError that lists the valid states, or the forms of WHEN, when one is wrong.
 */
export function parseMessageFilter(args: string[], now = Date.now()): MessageFilter {
  const filter: MessageFilter = {};
  const to = names(takeOption(args, "to"));
  if (to.length > 0) filter.to = to;
  const methods = names(takeOption(args, "method"));
  if (methods.length > 0) filter.methods = methods;
  const states = takeStates(args);
  if (states) filter.states = states;
  const since = takeOption(args, "since").pop();
  if (since !== undefined) {
    const when = parseWhen(since, now);
    if (typeof when === "string") throw new UsageError(`--since: ${when}`);
    filter.since = when;
  }
  return filter;
}

/**
 * Take every --state out of `args` (as takeOption does): the states they name together, or undefined when none is
 * given. Throws a UsageError that lists the valid states when one is wrong or none is named.
 */
export function takeStates(args: string[]): MessageState[] | undefined {
  const stateFlags = takeOption(args, "state");
  if (stateFlags.length === 0) return undefined;
  const states = parseStates(stateFlags.join(","));
  if (typeof states === "string") throw new UsageError(`--state: ${states}`);
  return states;
}

/** True when the filter narrows nothing. */
export function isEmptyFilter(filter: MessageFilter): boolean {
  return !filter.to && !filter.states && !filter.methods && filter.since === undefined;
}

function names(values: string[]): string[] {
  return [
    ...new Set(
      values
        .flatMap((v) => v.split(","))
        .map((v) => v.trim())
        .filter((v) => v !== ""),
    ),
  ];
}
