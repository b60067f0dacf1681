/**
 * portSrc: the service's end of a forwarding, until methodTimeout. methodArgs (ctrl's order): [the node
 * that listens, the service's host:port here, the address it listens on there]. The node that listens
 * sends it (portDst does), and only that node's frames, for this message's id, are taken: each open
 * frame connects to the host:port this message names — never to one a frame names — and its bytes go
 * back as frames (src/methods/portSession.ts).
 */
import { connect } from "node:net";
import { MethodError } from "../errors.js";
import { portAddress } from "../message/methods.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { ALL, forwardingEnded, PortSessions, refuseResumed, untilAborted } from "./portSession.js";

/** Sessions one forwarding holds at once: an open beyond them is reset. */
const MAX_SESSIONS = 64;

export async function portSrc(ctx: MethodContext): Promise<MethodOutput> {
  const { ports, message } = ctx;
  if (!ports) throw new MethodError("portSrc", "port forwarding is not available on this node");
  refuseResumed(ctx, "portSrc");
  const [dstNode = "", source = ""] = message.methodArgs;
  if (dstNode !== message.fromNode)
    throw new MethodError(
      "portSrc",
      `${message.fromNode} asked for a forwarding to ${dstNode}: the node that listens asks itself; send portDst to ${dstNode} instead`,
    );
  // The method's argument check (src/message/methods.ts) has made sure this parses.
  const service = portAddress(source, "") ?? { host: "", port: 0 };
  let peerEnded: (() => void) | undefined;
  const ended = new Promise<void>((resolve) => (peerEnded = resolve));
  const sessions: PortSessions = new PortSessions(
    ports.attach(message.id, dstNode, (frame) => {
      if (frame.s === ALL && frame.t === "rst") return peerEnded?.();
      if (sessions.take(frame)) return;
      if (frame.t !== "open" || frame.q !== 0) return sessions.drop(frame, "no such session");
      if (sessions.size >= MAX_SESSIONS) return sessions.drop(frame, `more than ${MAX_SESSIONS} sessions`);
      sessions.add(frame.s, connect({ host: service.host, port: service.port, allowHalfOpen: true }), "connector");
    }),
    () => ports.maxData,
  );
  ctx.log.info("port forwarding serves", { id: message.id, dstNode, source });
  const byPeer = await Promise.race([untilAborted(ctx.signal).then(() => false), ended.then(() => true)]);
  sessions.close(!byPeer);
  const summary = sessions.summary(`${source} → ${dstNode} ${message.methodArgs[2] ?? ""}`);
  return byPeer ? { data: `${summary}; ended by ${dstNode}`, exitCode: 0 } : forwardingEnded(ctx, "portSrc", summary);
}
