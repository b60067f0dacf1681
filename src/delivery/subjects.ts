/**
 * NATS subjects. Each names the node it is for first (as in the seeds) and the node that sends on it
 * last, so that a broker can pin both: a node may subscribe to `<itself>.>` and publish only to
 * `*.*.<itself>` (docs/SECURITY.md, "The broker's part"; `steward broker-config` writes that config).
 * A stolen broker credential then cannot read another node's traffic or speak under its name, and the
 * receiver checks the sender's token against the frame's signer as well.
 *
 *   <toNode>.<method>.<fromNode>   a message for a method on a node (request/reply carries the ACK)
 *   <toNode>._state.<fromNode>     best-effort progress notices, from the node running a message to its origin
 *   <toNode>._chunk.<fromNode>     one chunk of a message larger than the broker's max_payload (chunks.ts)
 *   <toNode>._bundle.<central>     central's signed bundle, sent to one node (it said hello with an older one)
 *   <toNode>._port.<fromNode>      port forwarding frames, one subject per direction (src/delivery/ports.ts)
 *   <toNode>._relay.<fromNode>     another node's signed message (or reply), carried one hop (relay.ts)
 *   <toNode>._copy.<fromNode>      one chunk of a file copy, from the node that reads the file (copyChunks.ts)
 *   _online.<node>                 a node announcing it is (back) on the broker: senders with messages
 *                                  waiting for it listen while they wait, and re-send at once
 *   _bundle.<central>              central's signed bundle, to every node at once
 *   _INBOX.<node>.<unique>.<n>     a node's own reply inbox: ACKs and refusals of what it sent
 *
 * Node names never start with "_" (src/message/names.ts), so Steward's own subjects cannot be a node's.
 */
import type { MethodName } from "../message/methods.js";

export const methodSubject = (toNode: string, method: MethodName, fromNode: string): string =>
  `${toNode}.${method}.${fromNode}`;
/** What a node subscribes to for one method it serves, from any sender. */
export const methodSubscription = (node: string, method: MethodName): string => `${node}.${method}.*`;
export const stateSubject = (toNode: string, fromNode: string): string => `${toNode}._state.${fromNode}`;
export const stateSubscription = (node: string): string => `${node}._state.*`;
export const chunkSubject = (toNode: string, fromNode: string): string => `${toNode}._chunk.${fromNode}`;
export const chunkSubscription = (node: string): string => `${node}._chunk.*`;
export const portSubject = (toNode: string, fromNode: string): string => `${toNode}._port.${fromNode}`;
export const portSubscription = (node: string): string => `${node}._port.*`;
export const copySubject = (toNode: string, fromNode: string): string => `${toNode}._copy.${fromNode}`;
export const copySubscription = (node: string): string => `${node}._copy.*`;
export const bundleSubject = (node: string, central: string): string => `${node}._bundle.${central}`;
export const relaySubject = (toNode: string, fromNode: string): string => `${toNode}._relay.${fromNode}`;
export const relaySubscription = (node: string): string => `${node}._relay.*`;
export const onlineSubject = (node: string): string => `_online.${node}`;
export const bundleBroadcast = (central: string): string => `_bundle.${central}`;
/** The prefix of a node's reply inboxes. */
export const inboxPrefix = (node: string): string => `_INBOX.${node}`;

/**
 * The node a subject says its sender is (its last token), or undefined for a reply inbox, whose
 * sender is whoever got the request. A frame whose signer is not this node is dropped.
 */
export function senderOf(subject: string): string | undefined {
  if (subject.startsWith("_INBOX.")) return undefined;
  const dot = subject.lastIndexOf(".");
  return dot < 0 ? undefined : subject.slice(dot + 1);
}

/** What a node's broker credential may publish and subscribe to: the least its role needs. */
export interface BrokerPermissions {
  publish: string[];
  subscribe: string[];
}

/**
 * The broker's side of the scheme above. A node publishes only subjects that name it as the sender
 * (and answers the requests it receives: the broker's allow_responses), and reads only what is
 * addressed to it, its own inbox, everyone's presence and central's bundle. Central also publishes
 * the bundle broadcast.
 */
export function brokerPermissions(node: string, central: string): BrokerPermissions {
  return {
    publish: [`*.*.${node}`, onlineSubject(node), ...(node === central ? [bundleBroadcast(central)] : [])],
    subscribe: [`${node}.>`, `${inboxPrefix(node)}.>`, onlineSubject("*"), bundleBroadcast(central)],
  };
}

/** The method a subject is for (`_online`, `_bundle`, `_INBOX` for Steward's own), for logs and reports. */
export function methodOf(subject: string): string {
  const [first, second] = subject.split(".");
  return (first?.startsWith("_") ? first : second) ?? subject;
}
