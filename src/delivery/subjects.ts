/**
 * NATS subjects, in the seeds' form: the receiving node first, so a broker's
 * permissions can allow a node exactly `<itself>.>` (as the original README's nats-server config does).
 *
 *   <toNode>.<method>   a message for a method on a node (request/reply carries the ACK)
 *   <toNode>._state     best-effort progress notices for messages that node sent
 *   <node>._online      a node announcing it is (back) on the broker: senders with messages
 *                       waiting for it listen while they wait, and re-send at once
 *   <node>._bundle      central's signed bundle, sent to one node (it said hello with an older one)
 *   _steward.bundle     central's signed bundle, to every node at once (a key approved or revoked, new rules)
 */
import type { MethodName } from "../message/methods.js";

export const methodSubject = (node: string, method: MethodName): string => `${node}.${method}`;
export const stateSubject = (node: string): string => `${node}._state`;
export const onlineSubject = (node: string): string => `${node}._online`;
export const bundleSubject = (node: string): string => `${node}._bundle`;
export const BUNDLE_BROADCAST = "_steward.bundle";
