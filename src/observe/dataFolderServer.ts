/**
 * A read-only HTTP view of the data folder (`exposeDataFolder` host:port),
 * to fetch results without a shell on the node:
 *
 *   GET /path/to/file    its bytes (text/plain when it looks like text)
 *   GET /path/to/folder/ a plain HTML listing, one link per entry
 *   HEAD                 the same headers, no body; any other verb is 405
 *
 * Nothing outside the folder is ever served: a path that resolves outside it
 * (`..`, `%2e%2e`, symlinks pointing out; checked on the real path) is 403,
 * a missing one 404. Binds to loopback unless a host is given.
 */
import { createReadStream } from "node:fs";
import { open, readdir, realpath, stat } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { resolve } from "node:path";
import { errorText } from "../errors.js";
import { listenOn } from "../listen.js";
import type { Logger } from "../log.js";
import { inside } from "../methods/paths.js";

export async function startDataFolderServer(address: string, folder: string, log: Logger): Promise<Server> {
  // node:http is loaded only when the view is configured: most nodes never serve HTTP (start time, memory).
  const { createServer } = await import("node:http");
  const root = resolve(folder);
  const server = createServer((req, res) => {
    serve(req, res, root).catch((err: unknown) => {
      log.warn("data folder view error", { url: req.url, reason: errorText(err) });
      if (!res.headersSent) text(res, 500, `cannot read it: ${errorText(err)}`);
      else res.destroy();
    });
  });
  return listenOn(server, address, "exposeDataFolder");
}

async function serve(req: IncomingMessage, res: ServerResponse, root: string): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return text(res, 405, `${req.method} is not served: the data folder view is read-only (GET, HEAD)`);
  }
  const raw = (req.url ?? "").split("?")[0] ?? "";
  if (!raw.startsWith("/")) return text(res, 400, "the path must start with /");
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return text(res, 400, "the path is not valid percent-encoding");
  }
  if (path.includes("\0")) return text(res, 400, "the path has a NUL byte");

  const target = resolve(root, `.${path}`);
  if (!inside(root, target)) return text(res, 403, "outside the data folder");
  let real: string;
  let realRoot: string;
  try {
    [real, realRoot] = await Promise.all([realpath(target), realpath(root)]);
  } catch {
    return text(res, 404, `nothing at ${path}`);
  }
  // Symlinks are followed only while they stay in the folder.
  if (!inside(realRoot, real)) return text(res, 403, "outside the data folder");
  const st = await stat(real);

  if (st.isDirectory()) {
    if (!raw.endsWith("/")) {
      // Relative links in the listing need the trailing slash.
      res.writeHead(301, { location: `${raw}/` }).end();
      return;
    }
    const entries = (await readdir(real, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    const links = entries.map((e) => {
      const name = e.name + (e.isDirectory() ? "/" : "");
      return `<a href="${html(encodeURIComponent(e.name) + (e.isDirectory() ? "/" : ""))}">${html(name)}</a>`;
    });
    if (real !== realRoot) links.unshift('<a href="../">../</a>');
    const body = `<!doctype html>\n<title>${html(path)}</title>\n<pre>\n${links.join("\n")}\n</pre>\n`;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(req.method === "HEAD" ? undefined : body);
    return;
  }
  if (!st.isFile()) return text(res, 403, "not a regular file");

  const type = (await looksLikeText(real)) ? "text/plain; charset=utf-8" : "application/octet-stream";
  res.writeHead(200, { "content-type": type, "content-length": st.size, "x-content-type-options": "nosniff" });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  await new Promise<void>((done, fail) => {
    const stream = createReadStream(real);
    stream.on("error", fail);
    res.on("close", () => {
      stream.destroy();
      done();
    });
    stream.pipe(res);
  });
}

/** No NUL byte in the first 8 KiB: good enough to show it as text. */
async function looksLikeText(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(8192);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return !buf.subarray(0, bytesRead).includes(0);
  } finally {
    await fh.close();
  }
}

function text(res: ServerResponse, status: number, message: string): void {
  const body = `${message}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function html(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
