/**
 * The broker side of port forwarding (portDst, portSrc): frames of forwarded TCP sessions travel on
 * `<toNode>._port.<fromNode>`, one subject per direction, each signed by its sender for that subject
 * (wire.ts). They are not messages: nothing is stored, and a session does not survive a restart.
 *
 * A frame names its forwarding: the id of the portSrc message that the node at the service's end
 * accepted (its ACL and subscriber said yes). A frame is handed on only when a forwarding with that id is
 * running here and its signer is the other node of that forwarding; anything else is dropped and counted
 * with the frames that fail verification (steward_unverified_dropped_total).
 */
import type { Logger } from "../log.js";
import type { PortChannel, PortFrame, PortLink } from "../methods/method.js";
import { portSubject, portSubscription } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Wire } from "./wire.js";

/** Room in a frame for everything but the data: the signature line, the ids and the JSON around them. */
const FRAME_OVERHEAD = 1024;
/** Larger frames gain little and hold up the other sessions' frames on the same broker link. */
const MAX_DATA = 64 * 1024;
const TYPES: ReadonlySet<string> = new Set(["open", "data", "fin", "ack", "rst"]);
/** Forwardings that ended here, remembered so that their peer's last frames in flight are not taken for attacks. */
const ENDED_KEPT = 256;

interface Attached {
  peer: string;
  onFrame: (frame: PortFrame) => void;
}

export class PortHub implements PortLink {
  private readonly forwardings = new Map<string, Attached>();
  /** Forwarding id → its peer, for the last ENDED_KEPT that ended. */
  private readonly ended = new Map<string, string>();
  private end: (() => void) | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly wire: Wire,
    private readonly log: Logger,
  ) {}

  get maxData(): number {
    // base64 makes 3 bytes 4 characters.
    return Math.max(1, Math.min(MAX_DATA, Math.floor((this.transport.maxPayload - FRAME_OVERHEAD) / 4) * 3));
  }

  attach(id: string, peer: string, onFrame: (frame: PortFrame) => void): PortChannel {
    if (this.forwardings.has(id)) throw new Error(`forwarding ${id} is already running here`);
    this.forwardings.set(id, { peer, onFrame });
    // Subscribed while a forwarding runs only: a node that forwards nothing takes no frames.
    this.end ??= this.transport.subscribe(portSubscription(this.wire.nodeName), (msg) =>
      this.onFrame(msg.subject, msg.data),
    );
    const subject = portSubject(peer, this.wire.nodeName);
    return {
      send: (frame) => {
        this.transport.publish(subject, this.wire.seal(subject, { f: id, ...frame }));
      },
      drop: (frame, why) =>
        this.wire.drop(portSubject(this.wire.nodeName, peer), peer, "port frame", `${why} (session ${frame.s})`),
      close: () => {
        this.forwardings.delete(id);
        this.ended.set(id, peer);
        for (const old of this.ended.keys()) {
          if (this.ended.size <= ENDED_KEPT) break;
          this.ended.delete(old);
        }
        if (this.forwardings.size === 0) {
          this.end?.();
          this.end = undefined;
        }
      },
    };
  }

  private onFrame(subject: string, bytes: Uint8Array): void {
    const opened = this.wire.open(subject, bytes);
    if (!opened) return;
    const frame = portFrame(opened.value);
    if (!frame) {
      this.wire.drop(subject, opened.signer, "port frame", "not a port forwarding frame");
      return;
    }
    const forwarding = this.forwardings.get(frame.f);
    // Sent before the peer heard that the forwarding ended here: nothing to take, nothing to count.
    if (!forwarding && this.ended.get(frame.f) === opened.signer) return;
    if (!forwarding || forwarding.peer !== opened.signer) {
      this.wire.drop(subject, opened.signer, "port frame", `no forwarding ${frame.f} with ${opened.signer} here`);
      return;
    }
    try {
      forwarding.onFrame(frame);
    } catch (err) {
      this.log.warn("port frame not handled", { id: frame.f, session: frame.s, reason: (err as Error).message });
    }
  }
}

/** A frame's body, checked field by field (its signer may still be wrong about everything else). */
function portFrame(v: unknown): (PortFrame & { f: string }) | undefined {
  if (v === null || typeof v !== "object") return undefined;
  const f = v as Record<string, unknown>;
  const seq = (n: unknown) => n === undefined || (Number.isSafeInteger(n) && (n as number) >= -1);
  if (typeof f.f !== "string" || typeof f.s !== "string" || f.s === "" || f.s.length > 64) return undefined;
  if (typeof f.t !== "string" || !TYPES.has(f.t) || !seq(f.q) || !seq(f.a)) return undefined;
  if (f.d !== undefined && typeof f.d !== "string") return undefined;
  return f as unknown as PortFrame & { f: string };
}
