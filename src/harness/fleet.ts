/**
 * Test fixtures: a real nats-server per suite (free port) and real Steward
 * nodes as child processes, each in its own folder under one temp dir.
 * Nothing is mocked. Use `sleepUntil` to wait for a condition, never a fixed sleep.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type MessageView, messageStatus, submit } from "../client/client.js";
import type { AcceptAnswer } from "../inputs/protocol.js";
import { LocalNatsServer } from "./natsServer.js";
import { NodeProcess } from "./nodeProcess.js";

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
      await Promise.all(nodeNames.map((n) => fleet.add(n, settings)));
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
    opts: { connected?: boolean; env?: Record<string, string> } = {},
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
    return node;
  }

  node(name: string): NodeProcess {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in this fleet`);
    return n;
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
