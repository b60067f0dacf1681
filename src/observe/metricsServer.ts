/**
 * The Prometheus endpoint (`promHostAndPort` host:port): GET /metrics answers
 * the node's metrics in the text exposition format; every other path is 404.
 * Binds to loopback unless a host is given.
 */
import type { Server } from "node:http";
import { errorText } from "../errors.js";
import { listenOn } from "../listen.js";
import type { Logger } from "../log.js";

export async function startMetricsServer(address: string, metrics: { text(): string }, log: Logger): Promise<Server> {
  // node:http is loaded only when the endpoint is configured: most nodes never serve HTTP (start time, memory).
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      res
        .writeHead(404, { "content-type": "text/plain; charset=utf-8" })
        .end(`nothing at ${path}; metrics are at GET /metrics\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res
        .writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" })
        .end("only GET /metrics\n");
      return;
    }
    let body: string;
    try {
      body = metrics.text();
    } catch (err) {
      // E.g. a scrape while the node is closing its store.
      log.warn("cannot collect metrics", { reason: errorText(err) });
      res
        .writeHead(500, { "content-type": "text/plain; charset=utf-8" })
        .end(`cannot collect metrics: ${errorText(err)}\n`);
      return;
    }
    res.writeHead(200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
      "content-length": Buffer.byteLength(body),
    });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  return listenOn(server, address, "promHostAndPort");
}
