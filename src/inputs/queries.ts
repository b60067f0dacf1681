/**
 * The questions a client asks a node about its messages and its peers, in one
 * place: each query's name, its arguments and its answer. The node answers
 * them (src/node/queries.ts); the unix socket and the HTTP listener serve
 * them; the client (src/client/client.ts) asks them.
 *
 * On the unix socket a query is one line that starts with "STEWARD/1 "
 * instead of a message document; the answer is one JSON value:
 *
 *   STEWARD/1 status ID          → {"message": MessageView} (with its result)
 *   STEWARD/1 list [LIMIT] [FILTER] → {"messages": MessageView[], "more"} (newest first, 50 by default;
 *                                  FILTER a MessageFilter (src/message/filter.ts); more: further ones match)
 *   STEWARD/1 changes LIMIT JSON → {"messages": MessageView[], "more"}  JSON = {"after": {"updatedAt", "id"}, "filter"?}:
 *                                  the matching messages that changed after that one, oldest change first
 *   STEWARD/1 wait MS ID...      → {"messages": MessageView[]} once every message is final, or pending in a
 *                                  stopped batch rollout (MS at most 60 s), or after MS milliseconds as they are then
 *   STEWARD/1 nodes [JSON]       → {"node", "central", "nodes": NodeView[]}   JSON = {"labels"?}: only the admitted
 *                                  nodes carrying every one of those labels
 *   STEWARD/1 health             → Health
 *   STEWARD/1 cancel JSON        → {"cancelled": CancelView[]}   JSON = CancelArgs: ids and/or filters, and who asks
 *
 * Central only, and on the socket only (never over TCP or HTTP): its key registry and rules.
 *
 *   STEWARD/1 keys               → {"central", "bundle", "keys": KeyRecord[]}
 *   STEWARD/1 approve JSON       → {"key": KeyRecord}       JSON = {"node", "groups"?, "labels"?, "publicKey"?}
 *   STEWARD/1 revoke NODE        → {"key": KeyRecord}
 *   STEWARD/1 acl                → {"bundle", "acl": Acl}
 *   STEWARD/1 setAcl JSON        → {"bundle", "acl": Acl}    JSON = the rules, {"rules": [...]}
 *
 * A JSON argument travels as one word: base64url of its text.
 *
 * A query the node cannot answer (an unknown id, say) answers {"error": "…"}.
 */
import type { LinkState } from "../delivery/transport.js";
import { type MessageFilter, readMessageFilter } from "../message/filter.js";
import { labelsProblem } from "../message/labels.js";
import type { MessageState } from "../message/message.js";
import type { Acl } from "../security/acl.js";
import type { BatchState, KeyRecord, NodeRecord, OutgoingRecord } from "../store/store.js";

export const QUERY_PREFIX = "STEWARD/1 ";

/** A message as clients see it: its stored state, times as ISO strings. */
export interface MessageView extends Pick<
  OutgoingRecord,
  "id" | "toNode" | "method" | "state" | "attempt" | "reason" | "exitCode"
> {
  createdAt: string;
  updatedAt: string;
  rerun?: boolean;
  /** Run again after a graceful stop of the receiver cut its run short. */
  interrupted?: boolean;
  /** While a streamed or scheduled method runs: how many parts are back. */
  parts?: number;
  /** The reply's data and outcome (status and wait only, once the reply is back). */
  result?: NonNullable<OutgoingRecord["result"]>;
  /** In a batch rollout: its wave, and the rollout's waves, maxErrors and state (stopped: later waves stay pending). */
  batch?: { id: string; wave: number; waves: number; maxErrors: number | null; state: BatchState };
}

/**
 * A node this node knows of: last hello seen (on central), messages pending (queued or sent), failed, total,
 * and its labels as central's bundle has them.
 */
export interface NodeView extends NodeRecord {
  labels: Record<string, string>;
}

/**
 * The life of a node process:
 *
 *   starting ──▶ running ──close()──▶ closing ──▶ closed
 */
export type NodeLifecycle =
  /** Opening the store, the inputs and the broker link; inputs already accept messages. */
  | "starting"
  /** Everything is up. */
  | "running"
  /** Shutting down: inputs refuse new messages; unfinished ones stay stored. */
  | "closing"
  /** Stopped. */
  | "closed";

export interface Health {
  node: string;
  lifecycle: NodeLifecycle;
  broker: LinkState;
  brokerAddress: string;
  /** The version of central's bundle this node holds (0: none yet, so it trusts no other node). */
  bundle: number;
  /** Outgoing messages this node is still delivering: queued, sent and waiting for their ACK, or replies waiting for their origin. */
  inFlight: number;
}

/**
 * What `steward cancel` asks: these ids, and/or every operator message matching all the filters given.
 * `by` is who asks, "USER" (the node adds "@NODE").
 */
export interface CancelArgs {
  ids: string[];
  toNode?: string;
  states?: MessageState[];
  method?: string;
  by: string;
}

/** What a cancel did to one message. */
export interface CancelView {
  id: string;
  /**
   * cancelled: now `cancelled` (a signed cancel follows it to its target when it may have got there);
   * final: it had ended already (`state` says how), nothing changed; unknown: no such message was sent
   * from this node; refused: not a message an operator can cancel (`reason` says why).
   */
  outcome: "cancelled" | "final" | "unknown" | "refused";
  state?: MessageState;
  reason?: string;
}

/** Every query: its arguments and its answer. */
export interface Queries {
  status: { args: { id: string }; answer: { message: MessageView } };
  list: { args: { limit: number; filter?: MessageFilter }; answer: MessageList };
  changes: { args: { limit: number; after: ChangeCursor; filter?: MessageFilter }; answer: MessageList };
  wait: { args: { ms: number; ids: string[] }; answer: { messages: MessageView[] } };
  nodes: { args: { labels?: Record<string, string> }; answer: { node: string; central: string; nodes: NodeView[] } };
  health: { args: Record<string, never>; answer: Health };
  cancel: { args: CancelArgs; answer: { cancelled: CancelView[] } };
  keys: { args: Record<string, never>; answer: { central: string; bundle: number; keys: KeyRecord[] } };
  approve: { args: KeyChange; answer: { key: KeyRecord } };
  revoke: { args: { node: string }; answer: { key: KeyRecord } };
  acl: { args: Record<string, never>; answer: { bundle: number; acl: Acl } };
  setAcl: { args: { acl: Acl }; answer: { bundle: number; acl: Acl } };
}

/** Messages a `list` or `changes` query found; `more` when further ones match beyond its limit. */
export interface MessageList {
  messages: MessageView[];
  more: boolean;
}

/** Where `changes` goes on from: the last change seen, by its time (MessageView.updatedAt) and id. */
export interface ChangeCursor {
  updatedAt: string;
  id: string;
}

/** What `steward keys approve` changes: the node, and optionally its groups, labels, or key (when it cannot say hello first). */
export interface KeyChange {
  node: string;
  groups?: string[];
  labels?: Record<string, string>;
  publicKey?: string;
}

export type QueryName = keyof Queries;
export type QueryArgs<Q extends QueryName> = Queries[Q]["args"];
export type QueryAnswer<Q extends QueryName> = Queries[Q]["answer"];

/** What a node answers when it cannot answer a query; says why and what to ask instead. */
export interface QueryRefusal {
  error: string;
}

export type QueryReply<Q extends QueryName> = QueryAnswer<Q> | QueryRefusal;

/** One query with its arguments, told apart by `name`. */
export type QueryRequest = { [Q in QueryName]: { name: Q; args: QueryArgs<Q> } }[QueryName];

/** The side that answers queries: one function per query. */
export type QueryHandlers = {
  [Q in QueryName]: (args: QueryArgs<Q>) => QueryReply<Q> | Promise<QueryReply<Q>>;
};

export function isRefusal(reply: object): reply is QueryRefusal {
  return typeof (reply as Partial<QueryRefusal>).error === "string";
}

/** How each query's arguments are written after its name on the socket, and read back. */
const WORDS: {
  [Q in QueryName]: { write: (args: QueryArgs<Q>) => string[]; read: (words: string[]) => QueryArgs<Q> | QueryRefusal };
} = {
  status: {
    write: ({ id }) => [id],
    read: ([id = ""]) => ({ id }),
  },
  list: {
    write: ({ limit, filter }) => [String(limit), ...(filter ? [jsonWord(filter)] : [])],
    read: ([limit, word]) => {
      if (word === undefined) return { limit: Number(limit ?? 50) };
      const filter = readMessageFilter(fromJsonWord(word));
      return typeof filter === "string" ? { error: filter } : { limit: Number(limit ?? 50), filter };
    },
  },
  changes: {
    write: ({ limit, after, filter }) => [String(limit), jsonWord({ after, ...(filter && { filter }) })],
    read: ([limit = "", word = ""]) => {
      const v = fromJsonWord(word) as { after?: Partial<ChangeCursor>; filter?: unknown } | undefined;
      const after = v?.after;
      if (
        typeof after?.updatedAt !== "string" ||
        Number.isNaN(Date.parse(after.updatedAt)) ||
        typeof after.id !== "string"
      )
        return { error: 'changes needs LIMIT and {"after": {"updatedAt": ISO time, "id"}}' };
      const filter = readMessageFilter(v?.filter);
      if (typeof filter === "string") return { error: filter };
      return {
        limit: Number(limit),
        after: { updatedAt: after.updatedAt, id: after.id },
        ...(v?.filter !== undefined && { filter }),
      };
    },
  },
  wait: {
    write: ({ ms, ids }) => [String(Math.max(0, Math.round(ms))), ...ids],
    read: ([ms = "", ...ids]) => {
      const limit = Number(ms);
      if (!Number.isInteger(limit) || limit < 0 || ids.length === 0)
        return { error: "wait needs MS ID...: the longest wait in milliseconds, then message ids" };
      return { ms: limit, ids };
    },
  },
  nodes: {
    write: ({ labels }) => (labels ? [jsonWord({ labels })] : []),
    read: ([word]) => {
      if (word === undefined) return {};
      const v = fromJsonWord(word) as { labels?: unknown } | undefined;
      const problem = v?.labels === undefined ? 'nodes takes {"labels": {...}}' : labelsProblem(v.labels);
      return problem ? { error: `nodes: ${problem}` } : { labels: v?.labels as Record<string, string> };
    },
  },
  health: { write: () => [], read: () => ({}) },
  cancel: {
    write: (args) => [jsonWord(args)],
    read: ([word = ""]) => {
      const v = fromJsonWord(word) as Partial<CancelArgs> | undefined;
      return Array.isArray(v?.ids) && typeof v.by === "string"
        ? (v as CancelArgs)
        : { error: "cancel needs the ids or filters, and who asks" };
    },
  },
  keys: { write: () => [], read: () => ({}) },
  approve: {
    write: (change) => [jsonWord(change)],
    read: ([word = ""]) => {
      const v = fromJsonWord(word) as Partial<KeyChange> | undefined;
      return typeof v?.node === "string" ? (v as KeyChange) : { error: "approve needs the node to approve" };
    },
  },
  revoke: { write: ({ node }) => [node], read: ([node = ""]) => (node ? { node } : { error: "revoke needs NODE" }) },
  acl: { write: () => [], read: () => ({}) },
  setAcl: {
    write: ({ acl }) => [jsonWord(acl)],
    read: ([word = ""]) => {
      const acl = fromJsonWord(word);
      return acl === undefined ? { error: "setAcl needs the rules as JSON" } : { acl: acl as Acl };
    },
  },
};

function jsonWord(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function fromJsonWord(word: string): unknown {
  try {
    return JSON.parse(Buffer.from(word, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
}

function isQueryName(name: string): name is QueryName {
  return Object.hasOwn(WORDS, name);
}

/** The socket line that asks a query. */
export function queryLine<Q extends QueryName>(name: Q, args: QueryArgs<Q>): string {
  const words: { write: (args: QueryArgs<Q>) => string[] } = WORDS[name];
  return `${QUERY_PREFIX}${[name, ...words.write(args)].join(" ")}\n`;
}

/** Read a socket line (after QUERY_PREFIX) into a query, or say why it is none. */
export function parseQueryLine(text: string): QueryRequest | QueryRefusal {
  const [name = "", ...words] = text.trim().split(/\s+/);
  if (!isQueryName(name))
    return {
      error: `unknown query "${name}"; use status ID, list [LIMIT] [FILTER], changes LIMIT JSON, wait MS ID..., nodes, health, cancel, keys, approve, revoke, acl or setAcl`,
    };
  const args = WORDS[name].read(words);
  if (isRefusal(args)) return args;
  return { name, args } as QueryRequest;
}

/** Hand a query to the handler of its name. */
export async function answerQuery(handlers: QueryHandlers, request: QueryRequest): Promise<QueryReply<QueryName>> {
  switch (request.name) {
    case "status":
      return handlers.status(request.args);
    case "list":
      return handlers.list(request.args);
    case "changes":
      return handlers.changes(request.args);
    case "wait":
      return handlers.wait(request.args);
    case "keys":
      return handlers.keys(request.args);
    case "approve":
      return handlers.approve(request.args);
    case "revoke":
      return handlers.revoke(request.args);
    case "acl":
      return handlers.acl(request.args);
    case "setAcl":
      return handlers.setAcl(request.args);
    case "nodes":
      return handlers.nodes(request.args);
    case "health":
      return handlers.health(request.args);
    case "cancel":
      return handlers.cancel(request.args);
  }
}
