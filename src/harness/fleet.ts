/**
 * Test fixtures: a real nats-server per suite (free port) and real Steward
 * nodes as child processes, each in its own folder under one temp dir.
 * Nothing is mocked. Use `sleepUntil` to wait for a condition, never a fixed sleep.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { health, messageStatus, type MessageView, query, submit } from "../client/client.js";
import { decodeJson, encode } from "../delivery/wire.js";
import type { AcceptAnswer } from "../inputs/protocol.js";
import { readHeader, seal } from "../security/frame.js";
import { type Identity, loadOrCreateIdentity } from "../security/identity.js";
import { LocalNatsServer } from "./natsServer.js";
import { NodeProcess } from "./nodeProcess.js";

/** A node played by a test straight on the broker, with a key central has admitted. */
export interface Peer {
  name: string;
  identity: Identity;
  /** `value` as JSON, signed by this peer for `subject`: what a node of that name would send. */
  seal(subject: string, value: unknown): Uint8Array;
}

/** The JSON body of a frame a node sent (its signature is not checked here). */
export function frameBody(bytes: Uint8Array): unknown {
  return decodeJson(readHeader(bytes)?.body ?? bytes);
}

/** The built CLI the nodes run (npm test builds it first). */
export const STEWARD_BIN = resolve(
  import.meta.dirname ?? new URL(".", import.meta.url).pathname,
  "../../dist/cli/main.js",
);

export class Fleet {
  readonly dir: string;
  broker!: LocalNatsServer;
  readonly nodes = new Map<string, NodeProcess>();

  private constructor(name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `steward-test-${name}-`));
  }

  /** A broker on a free port, plus the named nodes started and connected. The first node is central unless one is named "central". */
  static async start(
    name: string,
    nodeNames: string[] = [],
    settings: Record<string, string | number> = {},
    opts: { brokerArgs?: string[] } = {},
  ): Promise<Fleet> {
    const fleet = new Fleet(name);
    try {
      fleet.broker = await LocalNatsServer.start({
        dir: join(fleet.dir, "broker"),
        ...(opts.brokerArgs && { args: opts.brokerArgs }),
      });
      await Promise.all(nodeNames.map((n) => fleet.add(n, settings, { trusted: false })));
      if (nodeNames.includes("central") && settings.autoApproveKeys !== 0) await fleet.trusted(nodeNames);
    } catch (err) {
      // Leave nothing running behind a failed start, or the test process never exits.
      await fleet.close();
      throw err;
    }
    return fleet;
  }

  /** Create and start a node (connected to the broker unless `connected: false`); `settings.brokerAddress` overrides the fleet's broker. */
  async add(
    nodeName: string,
    settings: Record<string, string | number> = {},
    opts: { connected?: boolean; env?: Record<string, string>; trusted?: boolean } = {},
  ): Promise<NodeProcess> {
    const node = new NodeProcess({
      nodeName,
      dir: join(this.dir, nodeName),
      brokerAddress: this.broker.url,
      centralNodeName: "central",
      entry: STEWARD_BIN,
      ...(opts.env && { env: opts.env }),
      // The tests' central admits every key at its first hello, as the demo's does; tests of approval set it to 0.
      settings: { startPubREQHello: 1, ...(nodeName === "central" && { autoApproveKeys: 1 }), ...settings },
    });
    this.nodes.set(nodeName, node);
    await node.start(opts);
    // A node added to a running fleet whose central admits keys by itself: wait until everyone trusts it.
    const central = this.nodes.get("central");
    const admitsByItself = central?.running && central.opts.settings?.autoApproveKeys === 1;
    const itsCentral = (settings.centralNodeName ?? "central") === "central";
    if (opts.trusted !== false && opts.connected !== false && admitsByItself && itsCentral && nodeName !== "central")
      await this.trusted([nodeName]);
    return node;
  }

  node(name: string): NodeProcess {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in this fleet`);
    return n;
  }

  /**
   * Central's rules, opened: every admitted node may call every method on every node. For tests of
   * methods and delivery between any two nodes, not of the rules; resolves once every running node has them.
   */
  async allowAll(): Promise<void> {
    const { bundle } = await query(this.node("central").socketPath, "setAcl", {
      acl: { rules: [{ from: ["*"], methods: ["*"], to: ["*"] }] },
    });
    await this.waitBundle(bundle);
  }

  /** A key of the test's own, admitted by central as node `name`, for playing that node from a raw NATS client. */
  async peer(name: string): Promise<Peer> {
    const { identity } = loadOrCreateIdentity(join(this.dir, "peers", name), name);
    await query(this.node("central").socketPath, "approve", { node: name, publicKey: identity.publicKey });
    const { bundle } = await query(this.node("central").socketPath, "keys", {});
    await this.waitBundle(bundle);
    return { name, identity, seal: (subject, value) => seal(identity, subject, encode(value)) };
  }

  /** Play node `name` of this fleet from the broker, with its own key (read from its configFolder). */
  as(name: string): Peer {
    const { identity } = loadOrCreateIdentity(join(this.node(name).opts.dir, "etc"), name);
    return { name, identity, seal: (subject, value) => seal(identity, subject, encode(value)) };
  }

  /** Wait until central has admitted `names` and every running node holds the bundle that says so. */
  async trusted(names: string[]): Promise<void> {
    const sock = this.node("central").socketPath;
    let version = 0;
    await sleepUntil(
      async () => {
        const { keys, bundle } = await query(sock, "keys", {});
        version = bundle;
        return names.every((n) => n === "central" || keys.some((k) => k.name === n && k.state === "approved"));
      },
      { what: `central to admit ${names.join(", ")}` },
    );
    await this.waitBundle(version);
  }

  /** Wait until every running node that is on the broker holds central's bundle `version` or newer. */
  async waitBundle(version: number): Promise<void> {
    const running = [...this.nodes.values()].filter((n) => n.running);
    await sleepUntil(
      async () =>
        (await Promise.all(running.map((n) => health(n.socketPath)))).every(
          // A node kept off the broker (wrong credentials, say) cannot get it: it is not waited for.
          (h) => h.bundle >= version || h.broker !== "up",
        ),
      { what: `every node to hold central's bundle version ${version}` },
    );
  }

  /** Submit a document (object → JSON) through a node's socket. */
  async send(from: string, doc: unknown): Promise<AcceptAnswer[]> {
    return submit(this.node(from).socketPath, typeof doc === "string" ? doc : JSON.stringify(doc));
  }

  /** Submit and expect every message accepted; returns the ids. */
  async sendOk(from: string, doc: unknown): Promise<string[]> {
    const answers = await this.send(from, doc);
    const bad = answers.filter((a) => !a.ok);
    if (bad.length > 0) throw new Error(`refused: ${JSON.stringify(bad)}`);
    return answers.map((a) => (a.ok ? a.id : ""));
  }

  status(from: string, id: string): Promise<MessageView> {
    return messageStatus(this.node(from).socketPath, id);
  }

  /** Wait until the message reaches `state` (default: a final state) on its origin node. */
  async waitState(from: string, id: string, state?: MessageView["state"], timeoutMs = 20_000): Promise<MessageView> {
    let last: MessageView | undefined;
    await sleepUntil(
      async () => {
        last = await this.status(from, id);
        return state ? last.state === state : ["done", "failed", "expired", "cancelled"].includes(last.state);
      },
      { timeoutMs, what: () => `message ${id} to reach ${state ?? "a final state"} (last: ${JSON.stringify(last)})` },
    );
    return last as MessageView;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.nodes.values()].map((n) => n.close()));
    await this.broker?.stop().catch(() => undefined);
    if (!process.env.KEEP_TEST_DIRS) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Poll `cond` until it is true; fail with a message saying what was awaited. */
export async function sleepUntil(
  cond: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string | (() => string) } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      // The node may be restarting: keep polling until the deadline.
    }
    if (Date.now() > deadline) {
      const what = typeof opts.what === "function" ? opts.what() : (opts.what ?? "condition");
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
