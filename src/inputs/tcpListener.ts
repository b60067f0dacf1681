/**
 * The TCP listener (`tcpListener` host:port): the socket's protocol over TCP,
 * for clients on other machines or in containers. One document per
 * connection, one answer line per message. It takes messages only, no
 * queries, and binds to loopback unless a host is given.
 */
import { createServer, type Server } from "node:net";
import { listenOn } from "../listen.js";
import { type ConnectionOptions, handleConnection } from "./socket.js";

export async function startTcpListener(
  address: string,
  opts: Omit<ConnectionOptions, "queries" | "source">,
): Promise<Server> {
  // Half-open: a client that ends its side still gets the answer, which waits for the disk.
  const server = createServer({ allowHalfOpen: true }, (socket) =>
    handleConnection(socket, { ...opts, source: "tcpListener" }),
  );
  return listenOn(server, address, "tcpListener");
}
