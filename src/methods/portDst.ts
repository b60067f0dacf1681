/**
 * portDst: make a TCP service on another node reachable on this one, until methodTimeout. methodArgs
 * (ctrl's order): [the node the service runs on, its host:port there, the address to listen on here —
 * loopback and the service's port when left out]. This node listens, then asks the other node with a
 * portSrc message of its own (which that node's rules must allow from this one); each connection taken
 * here is a session whose bytes travel as signed frames (src/methods/portSession.ts). The result says
 * how many sessions there were and the bytes each way.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Socket } from "node:net";
import { MethodError } from "../errors.js";
import { isLoopback } from "../listen.js";
import { portAddress } from "../message/methods.js";
import { now } from "../security/clock.js";
import type { MethodContext, MethodOutput } from "./method.js";
import { ALL, forwardingEnded, PortSessions, refuseResumed, untilAborted } from "./portSession.js";

/** Connections one forwarding holds at once: more are closed at once. */
const MAX_SESSIONS = 64;

export async function portDst(ctx: MethodContext): Promise<MethodOutput> {
  const { ports, send, message } = ctx;
  if (!ports || !send) throw new MethodError("portDst", "port forwarding is not available on this node");
  refuseResumed(ctx, "portDst");
  // The method's argument check (src/message/methods.ts) has made sure these parse.
  const [srcNode = "", source = ""] = message.methodArgs;
  const service = portAddress(source, "") ?? { host: "", port: 0 };
  const listen = portAddress(message.methodArgs[2] ?? String(service.port), "127.0.0.1") ?? service;
  const where = `${listen.host}:${listen.port}`;
  // The other node's side ends at the same time, whatever happens to this one.
  if (message.methodTimeout <= 0)
    throw new MethodError("portDst", "a forwarding needs a time limit: give methodTimeout in seconds, e.g. 600");
  if (srcNode === ctx.nodeName)
    throw new MethodError("portDst", `${srcNode} is this node: a forwarding joins two nodes; name the other one`);

  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(new MethodError("portDst", `cannot listen on ${where}: ${err.message}`, { cause: err })),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  if (!isLoopback(listen.host))
    ctx.log.warn("port forwarding listens beyond loopback: every machine that reaches it reaches the service", {
      id: message.id,
      listen: where,
      instead: `listen on 127.0.0.1:${listen.port} unless other machines must connect`,
    });

  let farEnded: ((reason: string) => void) | undefined;
  const farEnd = new Promise<string>((resolve) => (farEnded = resolve));
  const request = send(
    {
      toNode: srcNode,
      fromNode: ctx.nodeName,
      method: "portSrc",
      methodArgs: [ctx.nodeName, source, where],
      methodTimeout: message.methodTimeout,
      ACKTimeout: message.ACKTimeout > 0 ? message.ACKTimeout : 10,
      retries: message.retries,
      retryWait: message.retryWait,
      // Not worth delivering once this forwarding is over.
      deliverBy: now() + message.methodTimeout * 1000,
      replyMethod: "none",
    },
    // Refused there (its rules, its subscriber) or never delivered: this forwarding cannot work.
    (state, reason) => {
      if (state !== "done") farEnded?.(`portSrc ${state}${reason ? `: ${reason}` : ""}`);
    },
  );
  try {
    // Only this side opens sessions: a frame for one it does not have is dropped.
    const sessions: PortSessions = new PortSessions(
      ports.attach(request.id, srcNode, (frame) => {
        if (frame.s === ALL && frame.t === "rst") farEnded?.("portSrc ended there first");
        else if (!sessions.take(frame)) sessions.drop(frame, "no such session");
      }),
      () => ports.maxData,
    );
    server.on("connection", (socket: Socket) => {
      if (sessions.size >= MAX_SESSIONS) {
        socket.destroy();
        return;
      }
      sessions.add(randomBytes(8).toString("hex"), socket, "listener");
    });
    ctx.log.info("port forwarding listens", { id: message.id, listen: where, srcNode, source, portSrc: request.id });

    const far = await Promise.race([untilAborted(ctx.signal).then(() => undefined), farEnd]);
    server.close();
    sessions.close(far === undefined);
    const summary = sessions.summary(`${where} → ${srcNode} ${source}`);
    if (far !== undefined)
      throw new MethodError("portDst", `the forwarding ended on ${srcNode} (${far}); ${summary}`, {
        output: { data: summary, exitCode: 1 },
      });
    return forwardingEnded(ctx, "portDst", summary);
  } finally {
    server.close();
    // A portSrc not delivered yet (the other node away) would otherwise arrive later and hold a run there for
    // its whole methodTimeout: it is withdrawn. One that runs there has been told by the rst frame above.
    ctx.withdraw?.(request.id, `${ctx.nodeName} (portDst ${message.id} ended)`, ["running"]);
  }
}
