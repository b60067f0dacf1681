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
import { JsonScanner } from "../message/document.js";
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
  // Tells when a JSON document has closed, chunk by chunk, so a large one is scanned once.
  const jsonEnd = new JsonScanner({ firstValueOnly: true });
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
