/**
 * Network faults on loopback: free ports, and a TCP proxy the suite puts
 * between a client (a node, a leaf server) and the server it talks to, so
 * that the link can be cut and restored at will.
 *
 *   open ──cut("stall")──▶ stalled: bytes stop both ways, sockets stay open (a satellite link gone dark;
 *     ▲                              the client finds out by its own ping timeout); new connections wait
 *     │  ──cut("reset")──▶ reset:   every connection is destroyed and new ones are refused at once
 *     └──────restore()───────────── both: traffic flows again (stalled sockets resume where they were)
 */
import { readFileSync } from "node:fs";
import { createConnection, createServer, type Server, Socket } from "node:net";

/**
 * A free TCP port on 127.0.0.1, for a server started a moment later. Chosen below the kernel's
 * ephemeral range: a port from that range (what binding port 0 gives) can be taken meanwhile by any
 * outgoing connection on the machine, and a node's broker link is one. Falls back to port 0.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let i = 0; i < 50 && low > FIRST_PORT + 1000; i++) {
    const port = FIRST_PORT + Math.floor(Math.random() * (low - FIRST_PORT));
    if (handedOut.has(port)) continue;
    if ((await tryListen(port)) !== undefined) {
      handedOut.add(port);
      return port;
    }
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error("no free TCP port on 127.0.0.1");
  return port;
}

const FIRST_PORT = 10_000;
/** Ports this process has handed out: not handed out twice, though free again between two uses. */
const handedOut = new Set<number>();

function ephemeralLow(): number {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

/** Listen on `port` (0: any) and let it go: the port, or undefined when it is taken. */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(undefined));
    s.listen(port, "127.0.0.1", () => {
      const addr = s.address();
      const got = typeof addr === "object" && addr ? addr.port : undefined;
      s.close(() => resolve(got));
    });
  });
}

/**
 * Write `text` on a new TCP connection to 127.0.0.1:`port`, end our side, and read until the server
 * closes: what a client of the TCP or HTTP listener gets back. A reset counts as the end too.
 */
export function tcpExchange(port: number, text: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection(port, "127.0.0.1");
    let out = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.end(text));
    c.on("data", (d: string) => {
      out += d;
    });
    c.on("close", () => resolve(out));
    c.on("error", () => undefined);
  });
}

export type CutMode = "stall" | "reset";

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

export class TcpProxy {
  private server: Server | undefined;
  private pairs = new Set<Pair>();
  private mode: CutMode | undefined;
  port = 0;

  private constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Listen on a free loopback port and forward to host:port. */
  static async start(target: { host?: string; port: number }): Promise<TcpProxy> {
    const p = new TcpProxy(target.host ?? "127.0.0.1", target.port);
    await p.listen();
    return p;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** How the link is cut now, or undefined when it is open. */
  get state(): CutMode | undefined {
    return this.mode;
  }

  /** Connections currently open through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.onClient(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        this.port = typeof addr === "object" && addr ? addr.port : 0;
        resolve();
      });
    });
  }

  private onClient(client: Socket): void {
    if (this.mode === "reset") {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined };
    this.pairs.add(pair);
    client.on("error", () => undefined);
    client.on("close", () => this.drop(pair));
    if (this.mode === "stall") client.pause();
    this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    if (this.mode === "stall") return; // Connected on restore(), if the client still waits.
    const { client } = pair;
    const up = new Socket();
    pair.upstream = up;
    up.on("error", () => undefined);
    up.on("close", () => this.drop(pair));
    up.connect(this.targetPort, this.targetHost);
    // Plain forwarding, no pipe(): a paused socket must stay paused until restore().
    client.on("data", (b: Buffer) => {
      if (!up.write(b)) client.pause();
    });
    up.on("drain", () => {
      if (this.mode === undefined) client.resume();
    });
    up.on("data", (b: Buffer) => {
      if (!client.write(b)) up.pause();
    });
    client.on("drain", () => {
      if (this.mode === undefined) up.resume();
    });
    client.resume();
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }

  /** Cut the link: "stall" stops every byte but keeps sockets open, "reset" destroys them. */
  cut(mode: CutMode = "stall"): void {
    this.mode = mode;
    for (const pair of [...this.pairs]) {
      if (mode === "reset") this.drop(pair);
      else {
        pair.client.pause();
        pair.upstream?.pause();
      }
    }
  }

  /** Let traffic flow again. */
  restore(): void {
    this.mode = undefined;
    for (const pair of [...this.pairs]) {
      if (pair.client.destroyed) {
        this.drop(pair);
        continue;
      }
      if (!pair.upstream) this.connectUpstream(pair);
      else {
        pair.client.resume();
        pair.upstream.resume();
      }
    }
  }

  async close(): Promise<void> {
    for (const pair of [...this.pairs]) this.drop(pair);
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
