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
import type { Logger } from "../log.js";
import { type Acceptor, answerLine } from "./protocol.js";
import {
  answerQuery,
  parseQueryLine,
  QUERY_PREFIX,
  type QueryHandlers,
  type QueryName,
  type QueryReply,
} from "./queries.js";

/** How a stream connection (unix socket or TCP) is served. */
export interface ConnectionOptions {
  acceptor: Acceptor;
  /** Answers the queries (status, list, wait, nodes, health); without them, queries are not served. */
  queries?: QueryHandlers;
  log: Logger;
  /** Largest document taken in one connection. */
  maxBytes: number;
  /** Names the input in logs: "socket", "tcpListener". */
  source: string;
}

export interface SocketInputOptions extends ConnectionOptions {
  path: string;
}

const IDLE_MS = 1000;

export async function startSocketInput(opts: SocketInputOptions): Promise<Server> {
  const { path } = opts;
  mkdirSync(dirname(path), { recursive: true });
  if (existsSync(path)) {
    if (await someoneListens(path)) {
      throw new Error(
        `another Steward node already listens on ${path}; stop it, or give this node its own --socket-folder`,
      );
    }
    unlinkSync(path); // Left behind by a node that was killed.
  }
  // Half-open: a client that ends its side (nc -N) still gets the answer, which waits for the disk.
  const server = createServer({ allowHalfOpen: true }, (socket) => handleConnection(socket, opts));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

/** Serve one connection: one document in, one answer line per message out, then close. */
export function handleConnection(socket: Socket, opts: ConnectionOptions): void {
  const { acceptor, queries, log, maxBytes, source } = opts;
  let buf = "";
  const jsonEnd = new JsonEnd();
  /** Set once the answer is decided or on its way: no more input is read. */
  let done = false;
  let idle: NodeJS.Timeout | undefined;
  const finishLater = (reply: Promise<string>) => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    reply.then(
      (text) => socket.end(text),
      (err: unknown) => socket.end(`error not accepted: ${(err as Error).message}\n`),
    );
  };
  const finish = (reply: string) => finishLater(Promise.resolve(reply));
  const processDocument = () => {
    if (done) return;
    if (queries && buf.startsWith(QUERY_PREFIX)) {
      const request = parseQueryLine(buf.slice(QUERY_PREFIX.length));
      // A query may answer later (wait): its answer is sent when it comes.
      finishLater(
        new Promise<QueryReply<QueryName>>((resolve) =>
          resolve("name" in request ? answerQuery(queries, request) : request),
        )
          .catch((err: unknown) => ({ error: (err as Error).message }))
          .then((value) => `${JSON.stringify(value)}\n`),
      );
      return;
    }
    // The answer waits for the store's disk sync: an accepted message is on disk.
    finishLater(acceptor.accept(buf, source).then((answers) => answers.map((a) => `${answerLine(a)}\n`).join("")));
  };

  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    if (done) return;
    buf += chunk;
    if (buf.length > maxBytes) {
      finish(`error input larger than ${maxBytes} bytes; split it into several documents\n`);
      return;
    }
    if (queries && buf.startsWith(QUERY_PREFIX) ? buf.includes("\n") : jsonEnd.feed(chunk)) {
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
  socket.on("error", (err) => log.debug("socket client error", { reason: err.message }));
  socket.on("close", () => clearTimeout(idle));
}

/**
 * Tells, chunk by chunk, when a JSON object or array has closed — keeping its
 * place between chunks, so a large document is scanned once, not once per chunk.
 */
export class JsonEnd {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;
  /** False once the text is known not to start with "[" or "{". */
  possible = true;
  /** True once the outermost bracket has closed. */
  closed = false;

  feed(chunk: string): boolean {
    for (let i = 0; i < chunk.length && this.possible && !this.closed; i++) {
      const c = chunk.charCodeAt(i);
      if (!this.started) {
        if (c === 32 || c === 9 || c === 10 || c === 13) continue;
        if (c !== 91 && c !== 123) {
          this.possible = false;
          break;
        }
        this.started = true;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 92) this.escaped = true;
        else if (c === 34) this.inString = false;
      } else if (c === 34) this.inString = true;
      else if (c === 91 || c === 123) this.depth++;
      else if (c === 93 || c === 125) {
        this.depth--;
        if (this.depth === 0) this.closed = true;
      }
    }
    return this.closed;
  }
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
