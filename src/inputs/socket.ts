/**
 * The unix socket input <socketFolder>/steward.sock:
 *   nc -U steward.sock < msg.json
 * One document per connection (JSON or YAML). A JSON document is handled as
 * soon as its brackets close, so `nc` without -N gets its answer; YAML is
 * handled when the client closes its side or goes quiet for a moment.
 *
 * Whoever can connect can run commands as the node's user: the socket is 0600
 * in a 0700 folder (with `socketGroup`, 0660 in a 0750 folder of that group),
 * and that is its only boundary — it takes no token.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { ConfigError } from "../errors.js";
import { connectionLimit } from "../listen.js";
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
import { tokenMatches } from "./token.js";

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
  /** When set, the first line must be `TOKEN <token>` (the TCP listener); the socket has none. */
  token?: string;
}

export interface SocketInputOptions extends ConnectionOptions {
  path: string;
  /** Connections served at once; more are answered with an error line and closed. */
  maxConnections: number;
  /** The group (gid) that may use the socket too (`socketGroup`); undefined: the node's user only. */
  group?: number | undefined;
}

const IDLE_MS = 1000;
/** Time to send the token line: a client that connects and says nothing is not kept. */
const HANDSHAKE_MS = 10_000;
/** Time to send the whole document: a client that trickles bytes is not kept forever. */
const READ_MS = 120_000;
/** Longest token line taken: `TOKEN ` and a token of a few dozen characters. */
const MAX_TOKEN_LINE = 256;

export async function startSocketInput(opts: SocketInputOptions): Promise<Server> {
  const { path, group } = opts;
  privateFolder(dirname(path), group, opts.log);
  if (existsSync(path)) {
    if (await someoneListens(path)) {
      throw new Error(
        `another Steward node already listens on ${path}; stop it, or give this node its own --socket-folder`,
      );
    }
    unlinkSync(path); // Left behind by a node that was killed.
  }
  // Half-open: a client that ends its side (nc -N) still gets the answer, which waits for the disk.
  const limit = connectionLimit(opts.maxConnections);
  const server = createServer({ allowHalfOpen: true }, (socket) =>
    limit.admit(socket) ? handleConnection(socket, opts) : refuseBusy(socket, opts.maxConnections),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // The node sets umask 077, so the socket is born 0600; this holds for a socket made in another process too.
  chmodSync(path, group === undefined ? 0o600 : 0o660);
  if (group !== undefined) chownSync(path, -1, group);
  return server;
}

/** The answer to one connection more than `max`: an error line, then closed. */
export function refuseBusy(socket: Socket, max: number): void {
  socket.on("error", () => undefined);
  socket.end(`error busy: this input serves ${max} connections at once (maxInputConnections); try again\n`, () =>
    socket.destroy(),
  );
}

/**
 * The socket's folder: made 0700 (0750 for a group); one of ours with another mode is set to it; one of
 * another user's that others can write to is refused (whoever can write there can replace the socket).
 */
function privateFolder(dir: string, group: number | undefined, log: Logger): void {
  const want = group === undefined ? 0o700 : 0o750;
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: want });
    chmodSync(dir, want);
  } else {
    const st = statSync(dir);
    const mine = st.uid === process.getuid?.();
    if (mine && (st.mode & 0o777) !== want) {
      // More open than wanted is tightened; less open (0700 while socketGroup wants 0750) is opened to the group.
      chmodSync(dir, want);
      log.info(
        group === undefined
          ? "socket folder was open to other users; made it private"
          : "socket folder set for socketGroup",
        {
          folder: dir,
          was: (st.mode & 0o777).toString(8),
          now: want.toString(8),
        },
      );
    } else if (!mine && (st.mode & 0o022) !== 0) {
      throw new ConfigError(
        "socketFolder",
        `${dir} belongs to another user and others can write to it (mode ${(st.mode & 0o777).toString(8)}), so anyone could replace the socket; give --socket-folder a folder of this node's user (it is created 0700)`,
      );
    }
  }
  if (group !== undefined) chownSync(dir, -1, group);
}

/** A group name or gid (`socketGroup`) → gid, from /etc/group. */
export function groupId(nameOrGid: string): number {
  if (/^\d+$/.test(nameOrGid)) return Number(nameOrGid);
  let groups = "";
  try {
    groups = readFileSync("/etc/group", "utf8");
  } catch {
    // No /etc/group: only a gid works.
  }
  for (const line of groups.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === nameOrGid && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new ConfigError("socketGroup", `no group "${nameOrGid}" in /etc/group; give its gid instead`);
}

/** Serve one connection: (the token line,) one document in, one answer line per message out, then close. */
export function handleConnection(socket: Socket, opts: ConnectionOptions): void {
  const { acceptor, queries, log, maxBytes, source, token } = opts;
  let buf = "";
  // Tells when a JSON document has closed, chunk by chunk, so a large one is scanned once.
  const jsonEnd = new JsonScanner({ firstValueOnly: true });
  /** Whether the token line has come (or none is asked for). */
  let admitted = token === undefined;
  /** Set once the answer is decided or on its way: no more input is read. */
  let done = false;
  let idle: NodeJS.Timeout | undefined;
  const finishLater = (reply: Promise<string>) => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    clearTimeout(deadline);
    reply.then(
      (text) => socket.end(text),
      (err: unknown) => socket.end(`error not accepted: ${(err as Error).message}\n`),
    );
  };
  const finish = (reply: string) => finishLater(Promise.resolve(reply));
  const refuse = (reply: string) => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    clearTimeout(deadline);
    // Nothing more is read from a refused client: closed once the refusal is written.
    socket.end(reply, () => socket.destroy());
  };
  const tooSlow = () =>
    refuse(
      admitted
        ? `error input not complete within ${READ_MS / 1000} s; send the whole document at once\n`
        : `error no token line within ${HANDSHAKE_MS / 1000} s\n`,
    );
  let deadline = setTimeout(tooSlow, admitted ? READ_MS : HANDSHAKE_MS);
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
  /** Take the token line off the front of the input; the rest is the document's first chunk. */
  const handshake = (chunk: string): string | undefined => {
    buf += chunk;
    const nl = buf.indexOf("\n");
    if (nl < 0) {
      if (buf.length > MAX_TOKEN_LINE) refuse(tokenRefusal);
      return undefined;
    }
    const m = /^TOKEN (\S+)\r?$/.exec(buf.slice(0, nl));
    if (!m || !tokenMatches(token ?? "", m[1])) {
      log.debug("refused a connection without the right token", { input: source, from: socket.remoteAddress });
      refuse(tokenRefusal);
      return undefined;
    }
    admitted = true;
    clearTimeout(deadline);
    deadline = setTimeout(tooSlow, READ_MS);
    const rest = buf.slice(nl + 1);
    buf = "";
    return rest;
  };

  socket.setEncoding("utf8");
  socket.on("data", (input: string) => {
    if (done) return;
    let chunk: string | undefined = input;
    if (!admitted) {
      chunk = handshake(input);
      if (chunk === undefined || chunk === "") return;
    }
    buf += chunk;
    if (buf.length > maxBytes) {
      refuse(`error input larger than ${maxBytes} bytes; split it into several documents\n`);
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
    if (done) return;
    if (!admitted) refuse(tokenRefusal);
    else if (buf.trim() === "") finish("");
    else processDocument();
  });
  socket.on("error", (err) => log.debug("socket client error", { reason: err.message }));
  socket.on("close", () => {
    clearTimeout(idle);
    clearTimeout(deadline);
  });
}

const tokenRefusal =
  'error token missing or wrong: the first line must be "TOKEN <token>", the token from the node\'s configFolder/listener.token\n';

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
