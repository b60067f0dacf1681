/**
 * The unix socket input <socketFolder>/steward.sock:
 *   nc -U steward.sock < msg.json
 * One document per connection (JSON or YAML). A JSON document is handled as
 * soon as its brackets close, so `nc` without -N gets its answer; YAML is
 * handled when the client closes its side or goes quiet for a moment.
 */
import { existsSync, mkdirSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Logger } from "../node/log.js";
import { type Acceptor, answerLine, QUERY_PREFIX } from "./protocol.js";

export interface SocketInputOptions {
  path: string;
  acceptor: Acceptor;
  /** Answers a CLI query ("status ID", "nodes", "health") with a JSON-able value. */
  query(command: string, args: string[]): unknown;
  log: Logger;
  /** Largest document taken in one connection. */
  maxBytes: number;
}

const IDLE_MS = 1000;

export async function startSocketInput(o: SocketInputOptions): Promise<Server> {
  mkdirSync(dirname(o.path), { recursive: true });
  if (existsSync(o.path)) {
    if (await someoneListens(o.path)) {
      throw new Error(`another Steward node already listens on ${o.path}; stop it, or give this node its own --socket-folder`);
    }
    unlinkSync(o.path); // Left behind by a node that was killed.
  }
  const server = createServer((socket) => handle(socket, o));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

function handle(socket: Socket, o: SocketInputOptions): void {
  let buf = "";
  let done = false;
  let idle: NodeJS.Timeout | undefined;
  const finish = (reply: string) => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    socket.end(reply);
  };
  const processDocument = () => {
    if (done) return;
    if (buf.startsWith(QUERY_PREFIX)) {
      const [command = "", ...args] = buf.slice(QUERY_PREFIX.length).trim().split(/\s+/);
      let value: unknown;
      try {
        value = o.query(command, args);
      } catch (err) {
        value = { error: (err as Error).message };
      }
      finish(`${JSON.stringify(value)}\n`);
      return;
    }
    const answers = o.acceptor.accept(buf, "socket");
    finish(answers.map((a) => `${answerLine(a)}\n`).join(""));
  };

  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    if (done) return;
    buf += chunk;
    if (buf.length > o.maxBytes) {
      finish(`error input larger than ${o.maxBytes} bytes; split it into several documents\n`);
      return;
    }
    if (buf.startsWith(QUERY_PREFIX) ? buf.includes("\n") : jsonComplete(buf)) {
      processDocument();
      return;
    }
    clearTimeout(idle);
    idle = setTimeout(() => {
      if (buf.trim() !== "") processDocument();
    }, IDLE_MS);
  });
  socket.on("end", () => {
    if (!done) {
      if (buf.trim() === "") finish("");
      else processDocument();
    }
  });
  socket.on("error", (err) => o.log.debug("socket client error", { reason: err.message }));
  socket.on("close", () => clearTimeout(idle));
}

/** True when `text` is one JSON object or array whose brackets have closed. */
export function jsonComplete(text: string): boolean {
  const t = text.trimStart();
  if (t[0] !== "[" && t[0] !== "{") return false;
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") {
      depth--;
      if (depth === 0) return t.slice(i + 1).trim() === "";
    }
  }
  return false;
}

function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}
