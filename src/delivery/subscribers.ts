/**
 * The node's subscribers: one per method it serves, each with the nodes
 * allowed to use it (`allowedNodes`, "*" = all). Started from the
 * `startSubREQ…` settings at start, and by opProcessStart / opProcessStop
 * while the node runs. A stopped method has no subscriber on the broker, so
 * senders get no ACK and, when their retries are spent, "max retries
 * reached … check if it got a subscriber for the given method".
 */
import type { Msg } from "@nats-io/transport-node";
import type { MethodName } from "../message/methods.js";
import type { AllowedNodes, SubscriberControl, SubscriberInfo } from "../methods/method.js";
import { methodSubscription } from "./subjects.js";
import type { Transport } from "./transport.js";

/** "*" / "" / "true" / "false" / "central,ship1" → who may use a method; undefined = not started. */
export function parseAllowed(value: string): AllowedNodes | undefined {
  const v = value.trim();
  if (v === "" || v === "false") return undefined;
  if (v === "*" || v === "true") return "*";
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

export class Subscribers implements SubscriberControl {
  private active = new Map<MethodName, SubscriberInfo & { end: () => void }>();

  constructor(
    private readonly nodeName: string,
    private readonly transport: Transport,
    private readonly handler: (msg: Msg, method: MethodName) => void,
  ) {}

  start(method: MethodName, allowedNodes: AllowedNodes): void {
    const existing = this.active.get(method);
    if (existing) {
      existing.allowedNodes = allowedNodes;
      return;
    }
    const end = this.transport.subscribe(methodSubscription(this.nodeName, method), (msg) => this.handler(msg, method));
    this.active.set(method, { method, allowedNodes, since: Date.now(), end });
  }

  stop(method: MethodName): boolean {
    const s = this.active.get(method);
    if (!s) return false;
    s.end();
    this.active.delete(method);
    return true;
  }

  /** May `node` use `method` here? Replies to this node's own requests are checked elsewhere. */
  allows(method: MethodName, node: string): boolean {
    const s = this.active.get(method);
    if (!s) return false;
    return s.allowedNodes === "*" || s.allowedNodes.includes(node);
  }

  list(): SubscriberInfo[] {
    return [...this.active.values()].map(({ method, allowedNodes, since }) => ({ method, allowedNodes, since }));
  }
}
