/**
 * The HTTP listener (`httpListener` host:port), for tools and scripts:
 *
 *   POST /messages       body: JSON or YAML, one message or an array
 *                        → {"results": [{"ok": true, "id", "toNode", "method"} | {"ok": false, "error", "index"}]}
 *                          200 when every message was accepted, 422 when any was refused
 *   GET  /messages       the newest messages and their states (?limit=N)
 *   GET  /messages/:id   one message with its state and result (404 when unknown)
 *   GET  /nodes          nodes: last hello, pending and failed messages
 *   GET  /health         this node and its broker link
 *
 * Binds to loopback unless a host is given.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { listenOn } from "../listen.js";
import type { Logger } from "../log.js";
import type { Acceptor } from "./protocol.js";
import { isRefusal, type QueryHandlers } from "./queries.js";

export interface HttpListenerOptions {
  acceptor: Acceptor;
  queries: QueryHandlers;
  log: Logger;
  maxBytes: number;
}

export async function startHttpListener(address: string, opts: HttpListenerOptions): Promise<Server> {
  // node:http is loaded only when this input is configured: most nodes never serve HTTP (start time, memory).
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => {
    serve(req, res, opts).catch((err: unknown) => {
      opts.log.warn("http listener error", { reason: (err as Error).message });
      if (!res.headersSent) send(res, 500, { error: (err as Error).message });
    });
  });
  return listenOn(server, address, "httpListener");
}

async function serve(req: IncomingMessage, res: ServerResponse, opts: HttpListenerOptions): Promise<void> {
  const { acceptor, queries, maxBytes } = opts;
  const url = new URL(req.url ?? "/", "http://steward");
  const parts = url.pathname.split("/").filter(Boolean);
  if (parts[0] === "messages" && parts.length === 1 && req.method === "POST") {
    const body = await readBody(req, maxBytes);
    if (body === undefined)
      return send(res, 413, { error: `body larger than ${maxBytes} bytes; split it into several requests` });
    const results = await acceptor.accept(body, "httpListener");
    return send(res, results.every((r) => r.ok) ? 200 : 422, { results });
  }
  if (req.method !== "GET")
    return send(res, 405, { error: `${req.method} ${url.pathname} is not served; see GET /health` });
  if (parts[0] === "messages" && parts.length === 2) {
    const reply = await queries.status({ id: decodeURIComponent(parts[1] as string) });
    return send(res, isRefusal(reply) ? 404 : 200, reply);
  }
  if (parts[0] === "messages" && parts.length === 1)
    return send(res, 200, await queries.list({ limit: Number(url.searchParams.get("limit") ?? 50) }));
  if (parts[0] === "nodes" && parts.length === 1) return send(res, 200, await queries.nodes({}));
  if (parts[0] === "health" && parts.length === 1) return send(res, 200, await queries.health({}));
  return send(res, 404, { error: `nothing at ${url.pathname}; try POST /messages, GET /messages/:id, GET /nodes` });
}

function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > max) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
