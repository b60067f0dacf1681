/**
 * Talking to a local node through its unix socket: hand it a document of
 * messages, or ask it about message and node state. Used by the CLI, the
 * demo and the tests.
 */
import { createConnection } from "node:net";
import { NodeQueryError, NodeUnreachableError } from "../errors.js";
import { type AcceptAnswer, parseAnswerLine, QUERY_PREFIX } from "../inputs/protocol.js";
import { FINAL_STATES, type MessageState } from "../message/message.js";

export interface MessageView {
  id: string;
  toNode: string;
  method: string;
  state: MessageState;
  attempt: number;
  reason: string | null;
  exitCode: number | null;
  createdAt: string;
  updatedAt: string;
  rerun?: boolean;
  /** While a streamed or scheduled method runs: how many parts are back. */
  parts?: number;
  result?: {
    data?: string;
    stderr?: string;
    error?: string;
    exitCode: number | null;
    rerun?: boolean;
    truncated?: number;
  };
}

export interface NodeView {
  name: string;
  lastSeen: number | null;
  pending: number;
  failed: number;
  total: number;
}

export interface Health {
  node: string;
  lifecycle: string;
  broker: "connecting" | "up" | "down" | "closed";
  brokerAddress: string;
  inFlight: number;
}

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
  const out = await exchange(socketPath, document);
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(parseAnswerLine);
}

async function query<T>(socketPath: string, line: string): Promise<T> {
  const out = await exchange(socketPath, `${QUERY_PREFIX}${line}\n`);
  const value = JSON.parse(out) as T & { error?: string };
  if (value.error) throw new NodeQueryError(value.error);
  return value;
}

export async function messageStatus(socketPath: string, id: string): Promise<MessageView> {
  return (await query<{ message: MessageView }>(socketPath, `status ${id}`)).message;
}

export async function listMessages(socketPath: string, limit = 50): Promise<MessageView[]> {
  return (await query<{ messages: MessageView[] }>(socketPath, `list ${limit}`)).messages;
}

export async function listNodes(socketPath: string): Promise<{ node: string; central: string; nodes: NodeView[] }> {
  return query(socketPath, "nodes");
}

export async function health(socketPath: string): Promise<Health> {
  return query(socketPath, "health");
}

/** Ask the node for the messages once all are final, or after `ms` as they are then (the node's `wait` query). */
export async function waitQuery(socketPath: string, ids: string[], ms: number): Promise<MessageView[]> {
  return (await query<{ messages: MessageView[] }>(socketPath, `wait ${Math.max(0, Math.round(ms))} ${ids.join(" ")}`))
    .messages;
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
