/**
 * Which of a node's messages an operator means: by receiver, state, method and
 * time. `steward status` lists them (src/cli/messageFilter.ts reads the flags),
 * the node's `list` and `changes` queries carry it as JSON, and the store turns
 * it into SQL (src/store/outgoing.ts), so only matching rows are read.
 */
import type { MessageState } from "./message.js";
import { durationOrTime } from "./when.js";

/** Every field narrows; a field left out (or empty) matches every message. */
export interface MessageFilter {
  /** Sent to any of these nodes. */
  to?: string[];
  /** In any of these states. */
  states?: MessageState[];
  /** Calling any of these methods. */
  methods?: string[];
  /** Changed at or after this time (ms since the epoch): accepted then, or moved to its state since. */
  since?: number;
}

/** Every state, in lifecycle order. A Record so that a state added to MessageState fails the build until listed here. */
const STATE_ORDER: Record<MessageState, number> = {
  pending: 0,
  queued: 1,
  sent: 2,
  acked: 3,
  waiting: 4,
  running: 5,
  done: 6,
  failed: 7,
  expired: 8,
  cancelled: 9,
};

export const MESSAGE_STATES: readonly MessageState[] = (Object.keys(STATE_ORDER) as MessageState[]).sort(
  (a, b) => STATE_ORDER[a] - STATE_ORDER[b],
);

export function isMessageState(name: string): name is MessageState {
  return Object.hasOwn(STATE_ORDER, name);
}

/** "queued,sent" → the states, or why not (naming every valid state). */
export function parseStates(text: string): MessageState[] | string {
  const names = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const unknown = names.filter((s) => !isMessageState(s));
  if (names.length === 0 || unknown.length > 0)
    return `${unknown.length > 0 ? `unknown state "${unknown.join('", "')}"` : "no state given"}; the states are ${MESSAGE_STATES.join(", ")}`;
  return [...new Set(names as MessageState[])];
}

/** A time back from `now` ("90s", "30m", "12h", "3d") or an ISO time ("2026-11-29T08:00:00Z") → ms since the epoch, or why not. */
export function parseWhen(text: string, now = Date.now()): number | string {
  const when = durationOrTime(text);
  if (when) return "at" in when ? when.at : now - when.durationMs;
  return `"${text}" is neither a duration back from now (90s, 30m, 12h, 3d: a number then s, m, h or d) nor an ISO time (2026-11-29T08:00:00Z)`;
}

/** A filter as the socket carries it (JSON from a client), checked; or why it is not one. */
export function readMessageFilter(value: unknown): MessageFilter | string {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) return "the filter must be an object";
  const v = value as Record<string, unknown>;
  const filter: MessageFilter = {};
  for (const key of ["to", "methods", "states"] as const) {
    const list = v[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || !list.every((s): s is string => typeof s === "string" && s !== ""))
      return `filter.${key} must be a list of names`;
    if (key === "states") {
      const states = parseStates(list.join(","));
      if (typeof states === "string") return `filter.states: ${states}`;
      filter.states = states;
    } else filter[key] = list;
  }
  if (v.since !== undefined) {
    if (typeof v.since !== "number" || !Number.isFinite(v.since))
      return "filter.since must be a time in ms since the epoch";
    filter.since = v.since;
  }
  return filter;
}
