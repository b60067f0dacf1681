/**
 * The TCP listener (`tcpListener` host:port): the socket's protocol over TCP,
 * for clients on other machines or in containers. The first line of a
 * connection is `TOKEN <token>` (configFolder/listener.token, see token.ts);
 * then one document per connection, one answer line per message. It takes
 * messages only, no queries, and binds to loopback unless a host is given.
 */
import { createServer, type Server } from "node:net";
import { connectionLimit, listenOn } from "../listen.js";
import { type ConnectionOptions, handleConnection, refuseBusy } from "./socket.js";

export interface TcpListenerOptions extends Omit<ConnectionOptions, "queries" | "source" | "token"> {
  token: string;
  /** Connections served at once; more are answered with an error line and closed. */
  maxConnections: number;
}

export async function startTcpListener(address: string, opts: TcpListenerOptions): Promise<Server> {
  // Half-open: a client that ends its side still gets the answer, which waits for the disk.
  const limit = connectionLimit(opts.maxConnections);
  const server = createServer({ allowHalfOpen: true }, (socket) =>
    limit.admit(socket)
      ? handleConnection(socket, { ...opts, source: "tcpListener" })
      : refuseBusy(socket, opts.maxConnections),
  );
  return listenOn(server, address, "tcpListener", opts.log);
}
