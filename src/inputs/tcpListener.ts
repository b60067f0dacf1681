/**
 * The TCP listener (`tcpListener` host:port): the socket's protocol over TCP,
 * for clients on other machines or in containers. One document per
 * connection, one answer line per message. It takes messages only, no
 * queries, and binds to loopback unless a host is given.
 */
import { createServer, type Server } from "node:net";
import { type ConnectionOptions, handleConnection } from "./socket.js";

/** "host:port", ":port" or "port" → where to listen; loopback when no host is given. */
export function listenAddress(value: string, setting: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new Error(`${setting} "${value}" is not host:port, e.g. 127.0.0.1:8888 or :8888`);
  const host = (m[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  return { host: host === "" ? "127.0.0.1" : host, port };
}

export async function startTcpListener(
  address: string,
  o: Omit<ConnectionOptions, "query" | "source">,
): Promise<Server> {
  const { host, port } = listenAddress(address, "tcpListener");
  // Half-open: a client that ends its side still gets the answer, which waits for the disk.
  const server = createServer({ allowHalfOpen: true }, (socket) =>
    handleConnection(socket, { ...o, source: "tcpListener" }),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`tcpListener cannot listen on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}
