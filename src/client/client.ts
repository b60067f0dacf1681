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
  type Health,
  isRefusal,
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
import { FINAL_STATES } from "../message/message.js";

export type { CancelView, Health, MessageView, NodeView };

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

export async function listNodes(socketPath: string): Promise<QueryAnswer<"nodes">> {
  return query(socketPath, "nodes", {});
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

/**
 * Wait until every message is in a final state (or the time is up). The node
 * answers the moment the last one is stored final; until then it answers every
 * `progressMs` (default 1 s) so that `onChange` sees each message whenever its
 * state moved. A node too old for the `wait` query is polled instead.
 */
export async function waitForFinal(
  socketPath: string,
  ids: string[],
  opts: { timeoutMs: number; progressMs?: number; onChange?: (m: MessageView) => void },
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
    const allFinal = ids.every((id) => {
      const m = latest.get(id);
      return m !== undefined && FINAL_STATES.includes(m.state);
    });
    if (allFinal || Date.now() >= deadline) return latest;
    if (!canWait) await new Promise((r) => setTimeout(r, 100));
  }
}
