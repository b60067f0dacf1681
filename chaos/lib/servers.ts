/**
 * NATS topologies on loopback for the chaos scenarios: a cluster of servers
 * with routes, and a hub with a leaf server. Config files go to temp files;
 * every port is a free one picked at start, so that a killed server restarts
 * with the same ports and its peers find it again.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalNatsServer } from "../../src/harness/natsServer.js";
import { freePort } from "../../src/harness/net.js";

export interface ClusterMember {
  name: string;
  /** Arguments for LocalNatsServer (["-c", file]). */
  args: string[];
  /** HTTP monitoring port (connz tells which clients are on this server). */
  httpPort: number;
}

/** Config files for `n` servers routed to each other. */
export async function clusterConfigs(dir: string, n: number): Promise<ClusterMember[]> {
  const routePorts = await Promise.all(Array.from({ length: n }, () => freePort()));
  const members: ClusterMember[] = [];
  for (let i = 0; i < n; i++) {
    const httpPort = await freePort();
    const name = `s${i + 1}`;
    const routes = routePorts.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p}"`);
    const file = join(dir, `${name}.conf`);
    writeFileSync(
      file,
      `server_name: ${name}\nhttp: "127.0.0.1:${httpPort}"\ncluster {\n  name: chaos\n  listen: "127.0.0.1:${routePorts[i]}"\n  routes: [${routes.join(", ")}]\n}\n`,
    );
    members.push({ name, args: ["-c", file], httpPort });
  }
  return members;
}

/** Names of the clients (e.g. "steward:ship1") connected to a server, from its monitoring port. */
export async function clientsOf(httpPort: number): Promise<string[]> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/connz?limit=1000`);
    const body = (await res.json()) as { connections?: { name?: string }[] };
    return (body.connections ?? []).map((c) => c.name ?? "");
  } catch {
    return [];
  }
}

/**
 * A hub config that takes leaf connections on `leafPort`. It advertises `advertisePort` (the suite's
 * proxy) as its leaf address: a leaf learns the address the hub advertises and would otherwise
 * reconnect straight to the hub, around the proxy, while the link is "cut".
 */
export function hubConfig(dir: string, leafPort: number, advertisePort: number): string[] {
  const file = join(dir, "hub.conf");
  writeFileSync(
    file,
    `server_name: hub\nleafnodes {\n  listen: "127.0.0.1:${leafPort}"\n  advertise: "127.0.0.1:${advertisePort}"\n}\n`,
  );
  return ["-c", file];
}

/** A leaf server config whose link to the hub goes to `hubLeafUrl` (the suite's proxy). */
export function leafConfig(dir: string, hubLeafUrl: string): string[] {
  const file = join(dir, "leaf.conf");
  writeFileSync(file, `server_name: leaf\nleafnodes {\n  reconnect: 1\n  remotes: [ { url: "${hubLeafUrl}" } ]\n}\n`);
  return ["-c", file];
}

export async function startServer(dir: string, args: string[]): Promise<LocalNatsServer> {
  return LocalNatsServer.start({ dir, args });
}
