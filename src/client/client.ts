/**
 * Talking to a local node through its unix socket: hand it a document of
 * messages, or ask it about message and node state. Used by the CLI, the
 * demo and the tests. `submitTcp` and `submitHttp` hand a document to a
 * node's TCP or HTTP listener instead, with the token from its configFolder
 * (`listenerToken`).
 */
import { createConnection } from "node:net";
import { NodeQueryError, NodeUnreachableError } from "../errors.js";
import { type AcceptAnswer, parseAnswerLine } from "../inputs/protocol.js";
import {
  type CancelArgs,
  type CancelView,
  type ChangeCursor,
  type Health,
  isRefusal,
  type MessageList,
  type MessageView,
  type NodeView,
  type QueryAnswer,
  type QueryArgs,
  queryLine,
  type QueryName,
  type QueryReply,
} from "../inputs/queries.js";
import { readListenerToken } from "../inputs/token.js";
import { listenAddress } from "../listen.js";
import type { MessageFilter } from "../message/filter.js";
import { FINAL_STATES, type MessageState } from "../message/message.js";
import { abortableSleep } from "../timers.js";

export type { CancelView, Health, MessageFilter, MessageList, MessageView, NodeView };

function exchange(socketPath: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let out = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.end(payload));
    socket.on("data", (d: string) => {
      out += d;
    });
    socket.on("end", () => resolve(out));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") reject(new NodeUnreachableError(socketPath, err));
      else reject(err);
    });
  });
}

/** Hand a document (JSON or YAML, one message or an array) to the node; one answer per message. */
export async function submit(socketPath: string, document: string): Promise<AcceptAnswer[]> {
  return answerLines(await exchange(socketPath, document));
}

/** The token of a node's TCP and HTTP listeners, read from its configFolder (readable only by its user). */
export function listenerToken(configFolder: string): string {
  return readListenerToken(configFolder);
}

/** Hand a document to a node's TCP listener (host:port) with its token; one answer per message. */
export function submitTcp(address: string, token: string, document: string): Promise<AcceptAnswer[]> {
  const { host, port } = listenAddress(address, "tcp");
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, host);
    let out = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.end(`TOKEN ${token}\n${document}`));
    socket.on("data", (d: string) => {
      out += d;
    });
    socket.on("end", () => resolve(answerLines(out)));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED") reject(new NodeUnreachableError(address, err));
      else reject(err);
    });
  });
}

/** POST a document (JSON or YAML) to a node's HTTP listener (host:port) with its token; one answer per message. */
export async function submitHttp(address: string, token: string, document: string): Promise<AcceptAnswer[]> {
  const { host, port } = listenAddress(address, "http");
  const json = /^\s*[[{]/.test(document);
  let res: Response;
  try {
    res = await fetch(`http://${host.includes(":") ? `[${host}]` : host}:${port}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": json ? "application/json" : "application/yaml" },
      body: document,
    });
  } catch (err) {
    throw new NodeUnreachableError(address, err);
  }
  const body = (await res.json()) as { results?: AcceptAnswer[]; error?: string };
  if (!body.results) throw new NodeQueryError(`${res.status} ${body.error ?? "no results"}`);
  return body.results;
}

function answerLines(out: string): AcceptAnswer[] {
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(parseAnswerLine);
}

/** Ask the node one query; a refusal (an unknown id, say) throws a NodeQueryError that says why. */
export async function query<Q extends QueryName>(
  socketPath: string,
  name: Q,
  args: QueryArgs<Q>,
): Promise<QueryAnswer<Q>> {
  const out = await exchange(socketPath, queryLine(name, args));
  const reply = JSON.parse(out) as QueryReply<Q>;
  if (isRefusal(reply)) throw new NodeQueryError(reply.error);
  return reply;
}

export async function messageStatus(socketPath: string, id: string): Promise<MessageView> {
  return (await query(socketPath, "status", { id })).message;
}

export async function listMessages(socketPath: string, limit = 50): Promise<MessageView[]> {
  return (await query(socketPath, "list", { limit })).messages;
}

/** The newest messages `filter` matches, at most `limit`; `more` when further ones match. */
export async function findMessages(socketPath: string, filter: MessageFilter, limit = 50): Promise<MessageList> {
  const answer = await query(socketPath, "list", { limit, filter });
  // A node older than filters answers every message, and says nothing of more: not to be shown as matches.
  if (typeof answer.more !== "boolean")
    throw new NodeQueryError("this node does not filter messages; restart it with this version of Steward");
  return answer;
}

/** What `watchMessages` reports, told apart by `type`. */
export type WatchEvent =
  /** The matching messages when the watch began, newest first (as `findMessages`). */
  | { type: "current"; messages: MessageView[]; more: boolean }
  /**
   * A message moved (or re-sent: a new attempt). `from`: its state when last seen; "new" when it was
   * accepted after the watch began; null when the watch had not seen it (it was beyond the first listing).
   */
  | { type: "change"; from: MessageState | "new" | null; message: MessageView }
  /** The node stopped answering (stopped, restarting): the watch asks again until it answers. */
  | { type: "lost"; error: Error }
  /** The node answers again; no change was missed (the store keeps them). */
  | { type: "back" };

/**
 * Follow the messages `filter` matches: first those there are, then each change as the node stores it,
 * until `signal` aborts. It asks the node's `changes` query every `intervalMs` (500 ms by default) for
 * what changed after the last change seen, so a node restart loses nothing; states passed through
 * between two asks are not seen (queued → done, say). With `filter.states`, a change is reported when
 * the message enters or leaves one of them.
 */
export async function* watchMessages(
  socketPath: string,
  filter: MessageFilter,
  opts: { signal: AbortSignal; limit?: number; intervalMs?: number },
): AsyncGenerator<WatchEvent> {
  const began = Date.now() - 1;
  let cursor: ChangeCursor = { updatedAt: new Date(began).toISOString(), id: "" };
  const current = await findMessages(socketPath, filter, opts.limit ?? 30);
  yield { type: "current", ...current };
  const seen = new Map<string, MessageView>(current.messages.map((m) => [m.id, m]));
  const { states, ...others } = filter;
  let lost = false;
  let caughtUp = false;
  while (!opts.signal.aborted) {
    let answer: MessageList;
    // Once caught up, each round reads the last second again: a change stored in the same millisecond as the
    // last one seen but with a lower id (or under a clock that stepped back a little) would be behind the
    // cursor. What was seen already is skipped below.
    const after = caughtUp
      ? { updatedAt: new Date(Math.max(began, Date.parse(cursor.updatedAt) - OVERLAP_MS)).toISOString(), id: "" }
      : cursor;
    try {
      answer = await query(socketPath, "changes", { limit: 1000, after, filter: others });
    } catch (err) {
      if (err instanceof NodeQueryError) throw err;
      if (!lost) yield { type: "lost", error: err as Error };
      lost = true;
      await abortableSleep(opts.intervalMs ?? 500, opts.signal);
      continue;
    }
    if (lost) yield { type: "back" };
    lost = false;
    for (const m of answer.messages) {
      cursor = { updatedAt: m.updatedAt, id: m.id };
      const prev = seen.get(m.id);
      seen.set(m.id, m);
      if (prev && prev.state === m.state && prev.attempt === m.attempt) continue;
      if (states && !states.includes(m.state) && !(prev && states.includes(prev.state))) continue;
      const from = prev ? prev.state : Date.parse(m.createdAt) >= began ? "new" : null;
      yield { type: "change", from, message: m };
    }
    caughtUp = !answer.more;
    if (caughtUp) await abortableSleep(opts.intervalMs ?? 500, opts.signal);
  }
}

/** How far back each round of watchMessages reads again. */
const OVERLAP_MS = 1000;

/** The nodes the node knows; with `labels`, only the admitted ones carrying all of them. */
export async function listNodes(socketPath: string, labels?: Record<string, string>): Promise<QueryAnswer<"nodes">> {
  return query(socketPath, "nodes", labels ? { labels } : {});
}

/** Withdraw messages sent from the node (`steward cancel`): what happened to each. */
export async function cancelMessages(socketPath: string, args: CancelArgs): Promise<CancelView[]> {
  return (await query(socketPath, "cancel", args)).cancelled;
}

export async function health(socketPath: string): Promise<Health> {
  return query(socketPath, "health", {});
}

/** Ask the node for the messages once all are final, or after `ms` as they are then (the node's `wait` query). */
export async function waitQuery(socketPath: string, ids: string[], ms: number): Promise<MessageView[]> {
  return (await query(socketPath, "wait", { ms, ids })).messages;
}

/** Final, or pending in a batch rollout that stopped: either way its state will not move on by itself. */
export function isSettled(m: Pick<MessageView, "state" | "batch">): boolean {
  return (
    FINAL_STATES.includes(m.state) || (m.state === "pending" && m.batch !== undefined && m.batch.state !== "running")
  );
}

/**
 * Wait until every message is settled, in a final state or held by a stopped rollout (or the time is up). The node
 * answers the moment the last one is stored final; until then it answers every
 * `progressMs` (default 1 s) so that `onChange` sees each message whenever its
 * state moved. A node too old for the `wait` query is polled instead.
 */
export async function waitForFinal(
  socketPath: string,
  ids: string[],
  opts: {
    timeoutMs: number;
    progressMs?: number;
    onChange?: (m: MessageView) => void;
    /** After each answer, with every message as it is now. */
    onRound?: (latest: ReadonlyMap<string, MessageView>) => void;
  },
): Promise<Map<string, MessageView>> {
  const latest = new Map<string, MessageView>();
  const deadline = Date.now() + opts.timeoutMs;
  let canWait = true;
  for (;;) {
    const left = deadline - Date.now();
    let views: MessageView[];
    if (canWait) {
      try {
        views = await waitQuery(socketPath, ids, Math.min(left, opts.progressMs ?? 1000));
      } catch (err) {
        if (!(err instanceof NodeQueryError && err.message.includes("unknown query"))) throw err;
        canWait = false;
        continue;
      }
    } else {
      views = [];
      for (const id of ids) views.push(await messageStatus(socketPath, id));
    }
    for (const m of views) {
      const prev = latest.get(m.id);
      if (!prev || prev.state !== m.state || prev.attempt !== m.attempt || prev.parts !== m.parts) opts.onChange?.(m);
      latest.set(m.id, m);
    }
    opts.onRound?.(latest);
    const allFinal = ids.every((id) => {
      const m = latest.get(id);
      return m !== undefined && isSettled(m);
    });
    if (allFinal || Date.now() >= deadline) return latest;
    if (!canWait) await new Promise((r) => setTimeout(r, 100));
  }
}
