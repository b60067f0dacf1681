/**
 * One forwarded TCP session: the bytes of a socket on this node travel to the peer as numbered frames and
 * the peer's come back the same way (src/delivery/ports.ts carries them).
 *
 *   send      each read of the socket is cut into frames of at most maxData bytes, numbered in one sequence
 *             per direction (the listening side's open is number 0). At most WINDOW frames are in flight:
 *             then the socket is paused until an ACK makes room (back-pressure reaches the sender's peer).
 *   ACK       the receiver takes only the next number (an earlier one is a duplicate or a replay: ACKed
 *             again, never written twice; a later one is dropped and comes again) and ACKs cumulatively;
 *             while its socket cannot take more it holds the ACK, which fills the sender's window: a frame
 *             sent again then gets the ACK it gave last, which says "here, but full".
 *   retransmit no ACK for RETRANSMIT_MS: every frame in flight goes again; after MAX_RETRANSMITS with
 *             neither progress nor "full" the peer is gone and the session is reset. A peer that answers
 *             "full" is there, its reader slow or paused: the session waits for it as long as it takes.
 *   close     the socket's end goes as fin, numbered like data, and half-closes the peer's socket once
 *             everything before it is written. Both fins taken and ACKed: the session is over. An error, a
 *             reset from the peer, or the forwarding's end (methodTimeout) resets it at once (rst).
 */
import type { Socket } from "node:net";
import { MethodError } from "../errors.js";
import { abortReason, type MethodContext, type MethodOutput, type PortChannel, type PortFrame } from "./method.js";

const WINDOW = 16;
/** The session name that means the whole forwarding: its rst ends the forwarding on the other node. */
export const ALL = "*";
const RETRANSMIT_MS = 1000;
const MAX_RETRANSMITS = 15;

export class PortSession {
  bytesSent = 0;
  bytesReceived = 0;
  private nextSeq = 0;
  private expected = 0;
  /** The last number ACKed: what a frame sent again gets while the ACK is held. */
  private ackedUpTo = -1;
  private readonly inFlight: PortFrame[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retransmits = 0;
  /** The peer's last answer said "here, but full": a re-send is then only a probe, its first frame. */
  private peerFull = false;
  private holdingAck = false;
  private finSent = false;
  private finTaken = false;
  private over = false;

  /**
   * `listener`: this side took the connection and sends the open (number 0); the other side (the connector)
   * made the session on taking that open, so it expects number 1 next. `onOver` runs once, when the session
   * is over either way.
   */
  constructor(
    readonly id: string,
    private readonly socket: Socket,
    private readonly channel: PortChannel,
    /** Asked at each read: the broker's max_payload is known once the link is up, and may change with it. */
    private readonly maxData: () => number,
    role: "listener" | "connector",
    private readonly onOver: (session: PortSession) => void,
  ) {
    if (role === "listener") {
      this.push({ s: id, t: "open" });
    } else {
      this.expected = 1;
      this.ack();
    }
    socket.on("data", (chunk: Buffer) => {
      const max = this.maxData();
      for (let at = 0; at < chunk.length; at += max) {
        const piece = chunk.subarray(at, at + max);
        this.bytesSent += piece.length;
        this.push({ s: id, t: "data", d: piece.toString("base64") });
      }
    });
    socket.on("end", () => {
      this.finSent = true;
      this.push({ s: id, t: "fin" });
    });
    socket.on("error", () => this.reset(true));
    socket.on("close", () => {
      if (!this.over && !(this.finSent && this.finTaken)) this.reset(true);
    });
  }

  /** A frame from the peer for this session. */
  take(frame: PortFrame): void {
    if (this.over) return;
    if (frame.t === "rst") return this.reset(false);
    if (frame.t === "ack") return this.acked(frame.a ?? -1);
    if (frame.q !== this.expected) {
      // A duplicate (its ACK was lost) or a replay: the peer learns again how far this side is.
      if ((frame.q ?? 0) < this.expected) this.ack();
      return;
    }
    this.expected++;
    if (frame.t === "data") {
      const bytes = Buffer.from(frame.d ?? "", "base64");
      this.bytesReceived += bytes.length;
      if (!this.socket.write(bytes) && !this.holdingAck) {
        this.holdingAck = true;
        this.socket.once("drain", () => this.release());
      }
    } else if (frame.t === "fin") {
      this.finTaken = true;
      // An ended socket emits no drain: the end's callback (everything written) lets a held ACK go instead.
      this.socket.end(() => this.release());
    }
    this.ack();
    this.finishIfDone();
  }

  /** End it now: the peer is told (rst) unless it said so itself. */
  reset(tellPeer: boolean): void {
    if (this.over) return;
    if (tellPeer) this.channel.send({ s: this.id, t: "rst" });
    this.socket.destroy();
    this.finish();
  }

  private push(frame: PortFrame): void {
    const numbered = { ...frame, q: this.nextSeq++ };
    this.inFlight.push(numbered);
    this.channel.send(numbered);
    if (this.inFlight.length >= WINDOW) this.socket.pause();
    this.timer ??= setTimeout(() => this.retransmit(), RETRANSMIT_MS);
  }

  /** The socket took what was written: the ACK held since goes, and the peer may send more. */
  private release(): void {
    if (!this.holdingAck) return;
    this.holdingAck = false;
    this.ack();
    this.finishIfDone();
  }

  private ack(): void {
    if (this.over) return;
    if (!this.holdingAck) this.ackedUpTo = this.expected - 1;
    this.channel.send({ s: this.id, t: "ack", a: this.ackedUpTo });
  }

  private acked(upTo: number): void {
    let progress = false;
    while (this.inFlight.length > 0 && (this.inFlight[0]?.q ?? Infinity) <= upTo) {
      this.inFlight.shift();
      progress = true;
    }
    if (!progress) {
      // The ACK of everything before what is in flight, again: the peer is there with its socket full (or the
      // first frame in flight was lost, which the probe sends again too).
      if (upTo === (this.inFlight[0]?.q ?? 0) - 1) {
        this.retransmits = 0;
        this.peerFull = true;
      }
      return;
    }
    this.retransmits = 0;
    this.peerFull = false;
    clearTimeout(this.timer);
    this.timer = this.inFlight.length > 0 ? setTimeout(() => this.retransmit(), RETRANSMIT_MS) : undefined;
    if (this.inFlight.length < WINDOW && !this.finSent) this.socket.resume();
    this.finishIfDone();
  }

  private retransmit(): void {
    this.timer = undefined;
    if (this.over || this.inFlight.length === 0) return;
    if (++this.retransmits > MAX_RETRANSMITS) return this.reset(true);
    // To a peer that is full the window is not sent again each second: one frame asks it whether it still is.
    for (const frame of this.peerFull ? this.inFlight.slice(0, 1) : this.inFlight) this.channel.send(frame);
    this.timer = setTimeout(() => this.retransmit(), RETRANSMIT_MS);
  }

  /** Both ends closed and everything ACKed: nothing more can travel. */
  private finishIfDone(): void {
    if (this.finSent && this.finTaken && this.inFlight.length === 0 && !this.holdingAck) {
      this.socket.destroy();
      this.finish();
    }
  }

  private finish(): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight.length = 0;
    this.onOver(this);
  }
}

/** The sessions of one forwarding, on either side, and what they carried: the method's result. */
export class PortSessions {
  private readonly open = new Map<string, PortSession>();
  /** Sessions that are over: a frame for one is late or replayed, never a new session. */
  private readonly over = new Set<string>();
  count = 0;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    private readonly channel: PortChannel,
    private readonly maxData: () => number,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /** A session for `socket`; the listener names it, the connector takes the name from the open frame. */
  add(id: string, socket: Socket, role: "listener" | "connector"): void {
    this.count++;
    const session = new PortSession(id, socket, this.channel, this.maxData, role, (s) => {
      this.open.delete(s.id);
      this.over.add(s.id);
      this.bytesSent += s.bytesSent;
      this.bytesReceived += s.bytesReceived;
    });
    this.open.set(id, session);
  }

  /** Whether `frame` is for a session this side has (or had); hands it on to a running one. */
  take(frame: PortFrame): boolean {
    const session = this.open.get(frame.s);
    if (session) session.take(frame);
    // A late ACK of a finished session is harmless; anything else for it is a replay (or very late).
    else if (!this.over.has(frame.s)) return false;
    else if (frame.t !== "ack" && frame.t !== "rst") this.channel.drop(frame, "session is over");
    return true;
  }

  /** Count and drop a frame this side cannot take; false, so that it reads as "not taken". */
  drop(frame: PortFrame, why: string): false {
    this.channel.drop(frame, why);
    return false;
  }

  /**
   * The forwarding ends: reset every session still open, and tell the other node that the whole forwarding
   * is over (session "*"), so that its side ends too when this one ends first (cancelled, stopped); not when
   * the other node ended it, or never ran its side.
   */
  close(tellPeer: boolean): void {
    for (const session of [...this.open.values()]) session.reset(tellPeer);
    if (tellPeer) this.channel.send({ s: ALL, t: "rst" });
    this.channel.close();
  }

  summary(what: string): string {
    return `${what}: ${this.count} session${this.count === 1 ? "" : "s"}, ${this.bytesSent} bytes sent, ${this.bytesReceived} bytes received`;
  }
}

/** Resolves when `signal` aborts: a forwarding runs for its whole methodTimeout. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** methodTimeout is how a forwarding ends as it should; any other abort (the node stopping) is an error. */
export function forwardingEnded(ctx: MethodContext, method: string, summary: string): MethodOutput {
  const reason = abortReason(ctx.signal);
  const output = { data: summary, exitCode: 0 };
  if (/methodTimeout/.test(reason)) return output;
  throw new MethodError(method, `${summary}; ended early: ${reason}`, { output });
}

/**
 * A forwarding ends with its node's stop or crash, and does not run again at the next start (a fresh
 * methodTimeout would outlive what was asked, and its sessions are gone anyway): a resumed run ends at once.
 */
export function refuseResumed(ctx: MethodContext, method: string): void {
  if (!ctx.resumed) return;
  const how = ctx.resumed === "rerun" ? "crashed" : "stopped";
  throw new MethodError(
    method,
    `the forwarding ended when ${ctx.nodeName} ${how}: a forwarding does not run again after a restart; send portDst again to forward anew`,
  );
}
