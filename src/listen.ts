/**
 * Where and how the node's TCP servers listen (tcpListener, httpListener,
 * promHostAndPort, exposeDataFolder): one parser for the settings' host:port,
 * one listen that names the setting when the port cannot be had, and the
 * limit on how many connections an input holds at once.
 */
import type { Server, Socket } from "node:net";
import type { Logger } from "./log.js";

/** "host:port", ":port" or "port" → where to listen; loopback when no host is given. */
export function listenAddress(value: string, setting: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new Error(`${setting} "${value}" is not host:port, e.g. 127.0.0.1:8888 or :8888`);
  const host = (m[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  return { host: host === "" ? "127.0.0.1" : host, port };
}

/** Whether a host name or address is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || h === "::ffff:127.0.0.1";
}

/** Listen on the address a setting gives; rejects with the setting's name when the port cannot be had. */
export async function listenOn<S extends Server>(
  server: S,
  address: string,
  setting: string,
  log?: Logger,
): Promise<S> {
  const { host, port } = listenAddress(address, setting);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`${setting} cannot listen on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  if (log && !isLoopback(host))
    log.warn(`${setting} listens beyond loopback: every machine that reaches ${host}:${port} can try its token`, {
      [setting]: address,
      instead: `bind it to 127.0.0.1:${port} unless other machines must send here`,
    });
  return server;
}

/**
 * At most `max` connections at once: `admit` says whether one more may be served (and counts it until it
 * closes), so a client that opens connections and never finishes them cannot take the node's memory or
 * file handles. The caller answers a refused one and closes it.
 */
export function connectionLimit(max: number): { admit(socket: Socket): boolean } {
  let open = 0;
  return {
    admit(socket) {
      if (open >= max) return false;
      open++;
      socket.once("close", () => open--);
      return true;
    },
  };
}
