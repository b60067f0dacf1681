/**
 * The broker side of a file copy's chunks (copySrc, copyDst: src/methods/). The steps of a copy that decide
 * something — the destination's status, which opens the copy there, and the finish — are messages, stored and
 * delivered with their grant like any other. The chunks in between are not: the file they come from is on
 * the source's disk and the file they go to is on the destination's, so storing each chunk once more in both
 * stores would only copy the bytes twice more (docs/PERFORMANCE.md, "Copy"). A chunk travels on
 * `<toNode>._copy.<fromNode>` as
 *
 *   <signed head>\n<bytes>        head: {"copy":tag,"index":n,"sha256":hex}, a frame signed for the subject
 *
 * The signature covers the head, and the head the bytes' sha256: signing the head alone costs a hundredth of
 * signing a chunk's bytes, and a changed byte still fails. The destination answers each chunk on its reply subject,
 * signed: written, unknown (the copy is not open here: the source asks the status again) or an error.
 *
 * A chunk is taken only for a copy a status message opened here, from the node that sent that status
 * (its grant checked by src/delivery/copyGrant.ts); anything else is answered unknown or dropped and counted
 * (steward_unverified_dropped_total). A chunk played again while its copy is open is written again where it
 * belongs; should it be an older version of that chunk (the source file changed), the finish finds the chunks
 * no longer add up to the source's, and the copy fails rather than putting a mixed file in place.
 */
import { createHash } from "node:crypto";
import type { Logger } from "../log.js";
import type { CopyAnswer, CopyChunk, CopyLink } from "../methods/method.js";
import { copySubject, copySubscription, inboxPrefix, senderOf } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Wire } from "./wire.js";

/** Room in a chunk's payload for its signed head. */
const HEAD_ROOM = 1024;
const NEWLINE = 10;
/** Spare chunk buffers kept: a window's worth and a few. */
const SPARE_KEPT = 24;

type OnChunk = (chunk: CopyChunk) => CopyAnswer | { drop: string };

export class CopyHub implements CopyLink {
  /** Buffers chunkBuffer() made: only in these is the room in front of the data ours to write. */
  private readonly roomy = new WeakSet<ArrayBufferLike>();
  /**
   * Buffers whose chunk was answered, to be used again: a copy would otherwise leave a chunk-sized buffer a
   * chunk for the garbage collector. Only an answered chunk's: the destination has its bytes, so the broker
   * connection no longer holds them (one that got no answer may still wait in its queue to be sent). Emptied
   * whenever no chunk is in flight, so that a node that copied once does not keep them.
   */
  private readonly spare: Buffer[] = [];
  /** `<source> <copy>` → what takes that copy's chunks. */
  private readonly copies = new Map<string, OnChunk>();
  private end: (() => void) | undefined;
  /** Per destination, the chunks waiting for its answer: given up when it announces itself. */
  private readonly waiting = new Map<string, { fail: Set<(err: Error) => void>; end: () => void }>();

  constructor(
    private readonly transport: Transport,
    private readonly wire: Wire,
    /** Tells when a node announces itself on the broker (Outbox.whenOnline). */
    private readonly whenOnline: (node: string, listener: () => void) => () => void,
    private readonly log: Logger,
  ) {
    // This node's own link came back: the answers to chunks sent before may have been lost with it.
    transport.onUp(() => {
      for (const w of this.waiting.values())
        for (const f of w.fail) f(new Error("the link to the broker came back: chunks in flight may be lost"));
    });
  }

  get maxChunk(): number {
    return Math.max(4096, this.transport.maxPayload - HEAD_ROOM);
  }

  chunkBuffer(length: number): Buffer {
    // A copy's chunks are all of one size but its last.
    const spare = this.spare.pop();
    if (spare?.length === HEAD_ROOM + length) return spare.subarray(HEAD_ROOM);
    const whole = Buffer.allocUnsafeSlow(HEAD_ROOM + length);
    this.roomy.add(whole.buffer);
    return whole.subarray(HEAD_ROOM);
  }

  send(dst: string, chunk: CopyChunk, timeoutMs: number): Promise<CopyAnswer> {
    const subject = copySubject(dst, this.wire.nodeName);
    const head = this.wire.seal(subject, { copy: chunk.copy, index: chunk.index, sha256: chunk.sha256 });
    const { data } = chunk;
    const at = data.byteOffset - head.length - 1;
    let payload: Uint8Array;
    if (this.roomy.has(data.buffer) && at >= 0) {
      // The head goes in the room in front of the data: the chunk is not copied once more to send it.
      payload = new Uint8Array(data.buffer, at, head.length + 1 + data.length);
      payload.set(head, 0);
      payload[head.length] = NEWLINE;
    } else payload = Buffer.concat([head, Buffer.of(NEWLINE), data]);
    const answer = this.transport.request(subject, payload, timeoutMs, (reply): CopyAnswer | undefined => {
      const v = this.wire.open(reply.subject, reply.data, dst)?.value as Record<string, unknown> | undefined;
      if (!v || v.copy !== chunk.copy || v.index !== chunk.index) return undefined;
      if (typeof v.written === "number") return { written: v.written };
      if (typeof v.unknown === "string") return { unknown: v.unknown };
      if (typeof v.error === "string") return { error: v.error };
      return undefined;
    });
    // A destination that restarted, or whose link came back, lost the chunks it had not answered: its
    // announcement says so at once, where their timeout would take seconds.
    let w = this.waiting.get(dst);
    if (!w) {
      const fail = new Set<(err: Error) => void>();
      const end = this.whenOnline(dst, () => {
        for (const f of fail) f(new Error(`${dst} announced itself again (restarted, or its link came back)`));
      });
      this.waiting.set(dst, (w = { fail, end }));
    }
    const entry = w;
    let fail = (_: Error): void => undefined;
    const given = new Promise<never>((_, reject) => (fail = reject));
    entry.fail.add(fail);
    void answer.then(
      () => {
        if (this.roomy.has(data.buffer) && this.spare.length < SPARE_KEPT)
          this.spare.push(Buffer.from(data.buffer, 0, data.buffer.byteLength));
      },
      () => undefined,
    );
    return Promise.race([answer, given]).finally(() => {
      entry.fail.delete(fail);
      if (entry.fail.size === 0 && this.waiting.get(dst) === entry) {
        entry.end();
        this.waiting.delete(dst);
        // No chunk in flight anywhere: the copies are done, or between rounds; their buffers are not kept.
        if (this.waiting.size === 0) this.spare.length = 0;
      }
    });
  }

  take(copy: string, source: string, onChunk: OnChunk): () => void {
    const key = `${source} ${copy}`;
    this.copies.set(key, onChunk);
    // Subscribed while a copy is open here only: a node that takes no copy takes no chunks.
    this.end ??= this.transport.subscribe(copySubscription(this.wire.nodeName), (msg) => {
      const answer = this.onChunk(msg.subject, msg.data);
      // Answered only on the sender's own inbox: a chunk cannot make this node sign a frame for another subject.
      const sender = senderOf(msg.subject);
      if (answer && sender && msg.reply?.startsWith(`${inboxPrefix(sender)}.`))
        msg.respond(this.wire.seal(msg.reply, answer));
    });
    return () => {
      if (this.copies.get(key) !== onChunk) return;
      this.copies.delete(key);
      if (this.copies.size === 0) {
        this.end?.();
        this.end = undefined;
      }
    };
  }

  /** The answer to a chunk, or undefined when it is dropped unanswered. */
  private onChunk(subject: string, bytes: Uint8Array): (CopyAnswer & { copy: string; index: number }) | undefined {
    // The head frame ends at its second newline: the first ends the frame's header line, and JSON has none.
    const first = bytes.subarray(0, HEAD_ROOM).indexOf(NEWLINE);
    const second = first < 0 ? -1 : bytes.subarray(0, HEAD_ROOM).indexOf(NEWLINE, first + 1);
    if (second < 0) {
      this.wire.drop(subject, undefined, "copy chunk", "not a copy chunk (no signed head)");
      return undefined;
    }
    const opened = this.wire.open(subject, bytes.subarray(0, second));
    if (!opened) return undefined;
    const head = chunkHead(opened.value);
    if (!head) {
      this.wire.drop(subject, opened.signer, "copy chunk", "signed, but its head is not a copy chunk's");
      return undefined;
    }
    const { copy, index } = head;
    // Looked up before the bytes are hashed: a chunk for no copy costs its sender an answer, not this node a hash.
    const onChunk = this.copies.get(`${opened.signer} ${copy}`);
    if (!onChunk)
      return { copy, index, unknown: `copy ${copy} from ${opened.signer} is not open on ${this.wire.nodeName}` };
    const data = bytes.subarray(second + 1);
    if (createHash("sha256").update(data).digest("hex") !== head.sha256) {
      this.wire.drop(subject, opened.signer, "copy chunk", `chunk ${index} of copy ${copy}: its bytes do not match`);
      return undefined;
    }
    let answer: CopyAnswer | { drop: string };
    try {
      answer = onChunk({ ...head, data });
    } catch (err) {
      this.log.warn("copy chunk not written", { copy, index, reason: (err as Error).message });
      answer = { error: (err as Error).message };
    }
    if ("drop" in answer) {
      this.wire.drop(subject, opened.signer, "copy chunk", `chunk ${index} of copy ${copy}: ${answer.drop}`);
      return undefined;
    }
    return { copy, index, ...answer };
  }
}

/** A chunk's head, checked field by field. */
function chunkHead(v: unknown): Omit<CopyChunk, "data"> | undefined {
  if (v === null || typeof v !== "object") return undefined;
  const h = v as Record<string, unknown>;
  if (typeof h.copy !== "string" || !/^[0-9a-f]{1,64}$/.test(h.copy)) return undefined;
  if (!Number.isSafeInteger(h.index) || (h.index as number) < 0) return undefined;
  if (typeof h.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(h.sha256)) return undefined;
  return { copy: h.copy, index: h.index as number, sha256: h.sha256 };
}
