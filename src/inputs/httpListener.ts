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
 *
 * Every request, GET too, carries `Authorization: Bearer <token>`
 * (configFolder/listener.token, see token.ts): 401 without it. A web page in
 * the operator's browser can reach loopback too, so cross-site requests are
 * refused before the token is looked at: a Host that is not this listener's
 * (DNS rebinding) or an Origin other than the Host is 403, and a POST whose
 * Content-Type is not JSON or YAML (what an HTML form can send) is 415.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { hostname } from "node:os";
import { connectionLimit, listenAddress, listenOn } from "../listen.js";
import type { Logger } from "../log.js";
import type { Acceptor } from "./protocol.js";
import { isRefusal, type QueryHandlers } from "./queries.js";
import { tokenMatches } from "./token.js";

export interface HttpListenerOptions {
  acceptor: Acceptor;
  queries: QueryHandlers;
  log: Logger;
  maxBytes: number;
  token: string;
  /** Connections served at once; more are answered 503 and closed. */
  maxConnections: number;
  /** More names clients may use in Host (`httpListenerHosts`), besides loopback, IP addresses and this host's name. */
  hostNames: string[];
}

/** Content types a POST may carry: what no HTML form can send. */
const DOCUMENT_TYPES = ["application/json", "application/yaml", "application/x-yaml", "text/yaml"];

export async function startHttpListener(address: string, opts: HttpListenerOptions): Promise<Server> {
  // node:http is loaded only when this input is configured: most nodes never serve HTTP (start time, memory).
  const { createServer } = await import("node:http");
  const { port } = listenAddress(address, "httpListener");
  const hosts = new Set(["localhost", hostname().toLowerCase(), ...opts.hostNames.map((h) => h.toLowerCase())]);
  const refused = new WeakSet<Socket>();
  // Timeouts are checked every 2 s (not Node's 30 s): a connection that never finishes its headers goes soon.
  const server = createServer({ connectionsCheckingInterval: 2000 }, (req, res) => {
    if (refused.has(req.socket)) return;
    serve(req, res, opts, { port, hosts }).catch((err: unknown) => {
      opts.log.warn("http listener error", { reason: (err as Error).message });
      if (!res.headersSent) send(res, 500, { error: (err as Error).message });
    });
  });
  // A client that sends its headers or body a byte at a time is not kept for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 120_000;
  const limit = connectionLimit(opts.maxConnections);
  // Before the HTTP parser's own listener: a connection over the limit gets 503 and is never served.
  server.prependListener("connection", (socket: Socket) => {
    if (limit.admit(socket)) return;
    refused.add(socket);
    socket.on("error", () => undefined);
    const body = `${JSON.stringify({ error: `busy: this listener serves ${opts.maxConnections} connections at once (maxInputConnections); try again` })}\n`;
    socket.end(
      `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
  });
  return listenOn(server, address, "httpListener", opts.log);
}

/** Why a request is not this listener's own (cross-site or DNS rebinding); undefined when it is. */
function foreignReason(req: IncomingMessage, port: number, hosts: Set<string>): string | undefined {
  const host = req.headers.host;
  if (!host) return "no Host header";
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  const name = (m?.[1] ?? "").toLowerCase().replace(/^\[(.*)\]$/, "$1");
  const hostPort = Number(m?.[2] ?? 80);
  // An IP address cannot be a foreign site's name: no rebinding can reach the listener through one.
  const known = hosts.has(name) || /^[\d.]+$/.test(name) || name.includes(":");
  if (!m || !known || hostPort !== port)
    return `Host "${host}" is not this listener; use 127.0.0.1:${port}, or add the name to httpListenerHosts`;
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`)
    return `Origin "${origin}" is another site: the listener takes no cross-site requests`;
  return undefined;
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  opts: HttpListenerOptions,
  own: { port: number; hosts: Set<string> },
): Promise<void> {
  const { acceptor, queries, maxBytes, token } = opts;
  const foreign = foreignReason(req, own.port, own.hosts);
  if (foreign) return refuse(res, 403, foreign, opts.log, req);
  const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
  if (!tokenMatches(token, auth?.[1]))
    return refuse(
      res,
      401,
      "token missing or wrong: send Authorization: Bearer <token>, the token from the node's configFolder/listener.token",
      opts.log,
      req,
    );
  const url = new URL(req.url ?? "/", "http://steward");
  const parts = url.pathname.split("/").filter(Boolean);
  if (parts[0] === "messages" && parts.length === 1 && req.method === "POST") {
    const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (!DOCUMENT_TYPES.includes(type))
      return refuse(
        res,
        415,
        `Content-Type "${type}" is not taken; send the messages as ${DOCUMENT_TYPES.join(", ")}`,
        opts.log,
        req,
      );
    const body = Number(req.headers["content-length"] ?? 0) > maxBytes ? undefined : await readBody(req, maxBytes);
    if (body === undefined)
      return refuse(res, 413, `body larger than ${maxBytes} bytes; split it into several requests`, opts.log, req);
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
        // Read no more of it; the 413 closes the connection.
        req.removeAllListeners("data");
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Answer a refused request and close its connection: nothing of its body is read. */
function refuse(res: ServerResponse, status: number, error: string, log: Logger, req: IncomingMessage): void {
  log.debug("http listener refused a request", { status, reason: error, from: req.socket.remoteAddress });
  res.setHeader("connection", "close");
  send(res, status, { error });
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
