/**
 * Where and how the node's TCP servers listen (tcpListener, httpListener,
 * promHostAndPort, exposeDataFolder): one parser for the settings' host:port,
 * one listen that names the setting when the port cannot be had.
 */
import type { Server } from "node:net";

/** "host:port", ":port" or "port" → where to listen; loopback when no host is given. */
function listenAddress(value: string, setting: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new Error(`${setting} "${value}" is not host:port, e.g. 127.0.0.1:8888 or :8888`);
  const host = (m[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  return { host: host === "" ? "127.0.0.1" : host, port };
}

/** Listen on the address a setting gives; rejects with the setting's name when the port cannot be had. */
export async function listenOn<S extends Server>(server: S, address: string, setting: string): Promise<S> {
  const { host, port } = listenAddress(address, setting);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`${setting} cannot listen on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}
