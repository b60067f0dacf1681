/**
 * The publisher side: every stored outgoing message gets its own async task
 * (a slow target never holds up the others) that sends it, waits for the ACK
 * bound to its id, and re-sends until the criteria say stop (see
 * docs/ARCHITECTURE.md).
 *
 *   queued ──link up──▶ sent(1) ──ACK──▶ acked
 *                        │ no ACK within ACKTimeout: wait retryWait (a node coming back cuts it short)
 *                        ▼
 *                      sent(n) … n = 1 + retries ──▶ failed "max retries reached"
 *                        │ the operator gave deliverBy: not failed, parked instead: sent again when the target
 *                        │ announces itself (_online, its hello) and on a slow back-off (doubling, at most 5 min)
 *                        ▼
 *                      expired "not delivered by …" once deliverBy has passed
 *   ACKTimeout 0: sent once, no ACK awaited (fire and forget).
 *   A receiver's refusal (bad envelope, not allowed, path outside its data folder) fails at once.
 *   Larger than the broker's max_payload: the attempt sends the message's chunks (chunks.ts), and the answer to
 *   the chunk that completes it is the message's ACK. Larger than maxMessageSize: failed at once.
 *   A receiver's "busy" (its sender is over maxMessagesPerSender there): sent again after the wait it asks
 *   for (at most a minute), and that attempt is not counted against retries: busy never loses a message.
 *   Past its deliverBy it is not sent again: expired.
 *   `steward cancel` (cancel()): queued or sent, its task stops and it is not sent again: cancelled. Once
 *   sent (or delivered) a signed cancel follows it, a message like any other, except that it waits for an
 *   absent target when its retries are spent, as a reply does.
 *
 * Every attempt is signed afresh (wire.ts); an ACK or refusal counts only when
 * the node the message went to signed it for this very request.
 *
 * Attempts are only counted while the broker link is up: a sender that is
 * itself offline keeps its messages queued rather than burning retries.
 */
import type { Logger } from "../log.js";
import { newEnvelope } from "../message/envelope.js";
import type { Envelope } from "../message/message.js";
import { methodSpec, wantsReply } from "../message/methods.js";
import { now } from "../security/clock.js";
import type { OutgoingRecord, Store } from "../store/store.js";
import { MAX_TIMER_MS } from "../timers.js";
import { type ChunkedMessage, chunkedMessage, ChunksStopped, FRAME_SLACK, sendChunks } from "./chunks.js";
import { nextHop, sealHop } from "./relay.js";
import { MAX_BUSY_MS } from "./senderLimit.js";
import { methodSubject, onlineSubject } from "./subjects.js";
import type { Transport } from "./transport.js";
import type { Ack, Presence, Wire } from "./wire.js";

export interface OutboxHooks {
  /** Retries spent or refused: report to central's error log. */
  onFailed(message: Envelope, reason: string): void;
  /** An attempt went out (attempt 1 is the first send, higher ones are re-sends): metrics. */
  onSent?(message: Envelope, attempt: number): void;
  /** The receiver ACKed it: metrics. */
  onAcked?(message: Envelope): void;
}

/** The receiver's answer when this sender is over its share there: nothing stored, send it again in `busy` ms. */
export interface Busy {
  busy: number;
  id: string;
}

interface Waiter {
  node: string;
  /** The message whose task waits. */
  id: string;
  wake: () => void;
}

/** How long a reply whose retries are spent waits between further attempts (an _online announcement cuts it short). */
const REPLY_PARKED_MS = 60_000;

/** The longest wait between the attempts of a message parked until its operator's deliverBy. */
const DELIVER_BY_PARKED_MAX_MS = 5 * 60_000;

/** How long a delivery task that failed on a store write waits before it starts again. */
const RETRY_FAILED_TASK_MS = 2000;

export class Outbox {
  private active = new Set<string>();
  private waiters = new Set<Waiter>();
  private watching = new Map<string, { count: number; end: () => void }>();
  private tasks = new Set<Promise<void>>();
  /** The newest `_online` time seen per node: an older or replayed announcement wakes nothing. */
  private lastOnline = new Map<string, number>();
  /** Told when a node announces itself (whenOnline). */
  private onlineListeners = new Map<string, Set<() => void>>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly transport: Transport,
    private readonly wire: Wire,
    private readonly log: Logger,
    private readonly hooks: OutboxHooks,
    /** Seconds a message stored before deliverBy existed may still be delivered from its first send. */
    private readonly maxMessageAge = 7 * 24 * 3600,
    /** Bytes of the largest message sent (maxMessageSize); above max_payload it goes in chunks. */
    private readonly maxMessageSize = 64 * 1024 * 1024,
  ) {}

  /** Start delivering a stored message (no-op when its task already runs). */
  deliver(record: Pick<OutgoingRecord, "envelope" | "attempt">): void {
    const message = record.envelope;
    if (this.closed || this.active.has(message.id)) return;
    this.active.add(message.id);
    const task = this.sendUntilAcked(message, record.attempt)
      .then(() => false)
      .catch(async (err) => {
        // A store write failed (disk full, say): the message is still stored, so try again in a moment
        // rather than leave it queued until the next start.
        this.log.error("delivery task failed; trying again", { id: message.id, reason: (err as Error).message });
        await this.sleep(message.toNode, message.id, RETRY_FAILED_TASK_MS);
        return true;
      })
      .then((again) => {
        this.active.delete(message.id);
        this.tasks.delete(task);
        if (!again || this.closed) return;
        const rec = this.store.outgoing.get(message.id);
        if (rec && (rec.state === "queued" || rec.state === "sent")) this.deliver(rec);
      })
      .catch((err) =>
        this.log.error("cannot restart a delivery task", { id: message.id, reason: (err as Error).message }),
      );
    this.tasks.add(task);
  }

  /** Resume every message that was queued or sent without an ACK before the last stop. */
  resume(): number {
    const pending = this.store.outgoing.pending();
    for (const rec of pending) this.deliver(rec);
    return pending.length;
  }

  /** A message was concluded from outside its task (an error report dropped, say): end its wait, so its task stops. */
  stop(id: string): void {
    for (const w of this.waiters) if (w.id === id) w.wake();
  }

  /**
   * The operator withdraws a message that has not ended (steward cancel); `by` is "USER@NODE". It is
   * cancelled at once; its delivery task stops. When it may have reached its target (sent at least once,
   * its ACK perhaps lost, or delivered) a signed cancel follows it there. False when it had ended meanwhile.
   */
  cancel(rec: OutgoingRecord, by: string): boolean {
    const message = rec.envelope;
    // Pending (a wave not released) or queued: it never left this node, so nothing need follow it.
    const delivered = !(rec.state === "pending" || rec.state === "queued" || rec.state === "sent") || rec.attempt > 0;
    const cancel = delivered ? this.cancelFor(message, by) : undefined;
    if (!this.store.moveToCancelled(message.id, `cancelled by ${by}`, cancel)) return false;
    this.stop(message.id);
    this.log.info("message cancelled", { id: message.id, toNode: message.toNode, by, cancelId: cancel?.id });
    if (cancel) this.deliver({ envelope: cancel, attempt: 0 });
    return true;
  }

  /**
   * The signed cancel of `message` for its target. It lives at least as long as the message itself may still
   * arrive there (its deliverBy), so that one arriving late finds the tombstone the cancel left.
   */
  private cancelFor(message: Envelope, by: string): Envelope {
    return newEnvelope({
      toNode: message.toNode,
      fromNode: this.wire.nodeName,
      method: "cancel",
      methodArgs: [message.id, by],
      ACKTimeout: message.ACKTimeout > 0 ? message.ACKTimeout : 10,
      retries: message.retries,
      retryWait: message.retryWait,
      methodTimeout: message.methodTimeout,
      deliverBy: Math.max(now() + this.maxMessageAge * 1000, message.deliverBy ?? 0),
      ...(message.relayViaNode !== undefined && { relayViaNode: message.relayViaNode }),
    });
  }

  /** A node came back (or our link did): cut every wait for it short. */
  wake(node?: string): void {
    for (const w of this.waiters) if (node === undefined || w.node === node) w.wake();
  }

  get inFlight(): number {
    return this.active.size;
  }

  private async sendUntilAcked(message: Envelope, attemptsSoFar: number): Promise<void> {
    const subject = methodSubject(message.toNode, message.method, this.wire.nodeName);
    // Through a relay (relay.ts): each attempt goes to the next hop, which ACKs it once it has stored it.
    const hop = nextHop(message, this.wire.nodeName);
    const ackFrom = hop ?? message.toNode;
    const maxAttempts = 1 + message.retries;
    let attempt = attemptsSoFar;
    let lastReason = "no ACK";
    let broughtForward = 0;
    // A message stored by an older version has no deadline yet: it gets one now.
    const deliverBy = message.deliverBy ?? now() + this.maxMessageAge * 1000;
    // With the operator's deliverBy, spent retries park the message until then (see the top of this file).
    const parks = message.deliverByGiven === true && message.requestId === undefined;
    let parked = 0;
    // Sealed once: every attempt sends the same chunks, so the receiver keeps what it has (see chunks.ts).
    let chunked: ChunkedMessage | undefined;
    while (!this.closed) {
      await this.transport.whenUp();
      if (this.closed) return;
      if (now() > deliverBy) {
        const by = new Date(deliverBy).toISOString();
        this.expire(message, `not delivered by ${by} (${parks ? "deliverBy" : "maxMessageAge"})`);
        return;
      }
      const sending = { ...message, deliverBy, attempt: attempt + 1 };
      const sealed = chunked
        ? { subject, bytes: chunked.whole }
        : hop === undefined
          ? { subject, bytes: this.wire.seal(subject, sending) }
          : sealHop(this.wire, sending, hop);
      const sentOn = sealed.subject;
      let bytes = sealed.bytes;
      if (hop !== undefined && bytes.length > this.transport.maxPayload) {
        // A relay hop carries its frame in one piece: chunks go only straight to their target.
        this.fail(
          message,
          `message is ${bytes.length} bytes, more than the broker's max_payload of ${this.transport.maxPayload}: too large to relay; send less data per message`,
        );
        return;
      }
      // A chunked frame says attempt 1 whatever the attempt: the same bytes after a restart of this node, so
      // the receiver keeps the chunks it has.
      if (!chunked && bytes.length > this.transport.maxPayload && attempt > 0)
        bytes = this.wire.seal(subject, { ...message, deliverBy, attempt: 1 });
      if (bytes.length > this.maxMessageSize + FRAME_SLACK) {
        this.fail(
          message,
          `message is ${bytes.length} bytes, more than maxMessageSize (${this.maxMessageSize}); send less data per message`,
        );
        return;
      }
      if (!chunked && bytes.length > this.transport.maxPayload) chunked = chunkedMessage(message, deliverBy, bytes);
      attempt++;
      // Cancelled meanwhile (while the link was down, say): not sent again.
      if (!this.store.outgoing.moveToSent(message.id, attempt)) return;
      if (message.ACKTimeout === 0 && !chunked) {
        // Fire and forget: the reply, if any, moves it on.
        if (this.transport.publish(sentOn, bytes)) {
          this.hooks.onSent?.(message, attempt);
          return;
        }
        attempt--;
        continue;
      }
      this.hooks.onSent?.(message, attempt);
      const started = Date.now();
      try {
        // Only the node the message went to can ACK or refuse it (signed for this request's inbox); anything
        // else on the inbox is dropped and the wait goes on, so a forged answer that comes first costs nothing.
        // Chunks are ACKed one by one even when the message itself is fire and forget.
        const ack = chunked
          ? await sendChunks(
              this.transport,
              this.wire,
              chunked,
              Math.max(message.ACKTimeout, 10) * 1000,
              (n, count) => this.store.outgoing.noteProgress(message.id, `chunk ${n}/${count} ACKed`),
              () => !this.closed && this.stillToSend(message.id),
            )
          : await this.transport.request(sentOn, bytes, message.ACKTimeout * 1000, (answer) => {
              const value = this.wire.open(answer.subject, answer.data, ackFrom)?.value as Partial<Ack | Busy> | null;
              return value &&
                (("ack" in value && value.ack === message.id) ||
                  "refused" in value ||
                  ("busy" in value && value.id === message.id))
                ? (value as Ack | Busy)
                : undefined;
            });
        if ("busy" in ack) {
          // Not stored there: wait as asked (a little more, so that senders told the same do not all come back
          // at once), then send it again. That attempt is brought forward: it spends no retry.
          broughtForward++;
          lastReason = `${ackFrom} busy`;
          const asked = typeof ack.busy === "number" && ack.busy > 0 ? Math.min(ack.busy, MAX_BUSY_MS) : 1000;
          this.log.debug("receiver busy, will re-send", { id: message.id, toNode: message.toNode, waitMs: asked });
          await this.sleep(ackFrom, message.id, asked * (1 + Math.random() / 2));
          const state = this.store.outgoing.get(message.id)?.state;
          if (state !== "queued" && state !== "sent") return;
          continue;
        }
        if ("ack" in ack && ack.ack === message.id) {
          this.hooks.onAcked?.(message);
          if (chunked) this.store.outgoing.noteProgress(message.id, null);
          // A reply, a hello or an error report gets no reply back: for them, delivered is done.
          // A copy this node relays is done once the next node has it; its origin waits for the reply.
          if (wantsReply(message.method) && message.requestId === undefined && message.relayFrame === undefined) {
            this.store.outgoing.moveToAcked(message.id);
            if (hop !== undefined)
              this.store.outgoing.noteHop(
                message.id,
                `relayed by ${hop}: ${hop} has it, to deliver to ${message.toNode}`,
              );
          } else this.store.outgoing.moveToFinal(message.id, "done", { exitCode: 0 });
          return;
        }
        if ("refused" in ack && typeof ack.refused === "string") {
          if (ack.refused.startsWith("expired:")) this.expire(message, `refused by ${ackFrom}: ${ack.refused}`);
          // "not allowed: central may not call …" says it all, as the operator should read it.
          else if (ack.refused.startsWith("not allowed:")) this.fail(message, ack.refused);
          else this.fail(message, `refused by ${ackFrom}: ${ack.refused}`);
          return;
        }
        lastReason = `no valid ACK from ${ackFrom} (${JSON.stringify(ack).slice(0, 80)})`;
      } catch (err) {
        // Cancelled, or closing: the rest of its chunks are not sent.
        if (err instanceof ChunksStopped) return;
        lastReason = (err as Error).message;
      }
      // A "no subscriber" answer comes back at once: still wait out the ACK window, then retryWait.
      let wait = Math.max(0, message.ACKTimeout * 1000 - (Date.now() - started)) + message.retryWait * 1000;
      if (attempt - broughtForward >= maxAttempts) {
        // A reply whose retries are spent is not dropped: the origin would never learn how its request
        // went. It waits for the origin to come back (its _online announcement) or a minute, then goes again.
        if (parks) {
          if (parked === 0)
            this.log.info("retries spent; waiting for the target until deliverBy", {
              id: message.id,
              toNode: message.toNode,
              deliverBy: new Date(deliverBy).toISOString(),
            });
          parked = Math.min(DELIVER_BY_PARKED_MAX_MS, Math.max(wait, parked * 2, 1000));
          // Woken at deliverBy at the latest, so that it expires then.
          wait = Math.max(0, Math.min(parked, deliverBy - now() + 1));
          // A cancel too: the target must learn of it, however long it is away.
        } else if (message.requestId === undefined && !methodSpec(message.method)?.cancels) break;
        else wait = Math.max(wait, REPLY_PARKED_MS);
      }
      this.log.debug("no ACK, will re-send", { id: message.id, toNode: message.toNode, attempt, reason: lastReason });
      // A re-send brought forward by a wake (the node said it is back) does not count against retries: replayed
      // `_online` announcements, or a node that is back without this method's subscriber, cannot burn them.
      if (await this.sleep(ackFrom, message.id, wait)) broughtForward++;
      // The state may have moved on meanwhile (the reply came back though this ACK was lost): stop re-sending.
      const state = this.store.outgoing.get(message.id)?.state;
      if (state !== "queued" && state !== "sent") return;
    }
    if (this.closed) return;
    this.fail(
      message,
      `max retries reached (${attempt} attempts, last: ${lastReason}), check if node is up and running and if it got a subscriber for the given method`,
    );
  }

  /** Is the message still queued or sent (not cancelled, not concluded by its reply)? */
  private stillToSend(id: string): boolean {
    const state = this.store.outgoing.get(id)?.state;
    return state === "queued" || state === "sent";
  }

  private fail(message: Envelope, reason: string): void {
    if (this.store.outgoing.moveToFinal(message.id, "failed", { reason })) {
      this.log.warn("message failed", { id: message.id, toNode: message.toNode, method: message.method, reason });
      this.hooks.onFailed(message, reason);
    }
  }

  private expire(message: Envelope, reason: string): void {
    if (this.store.outgoing.moveToFinal(message.id, "expired", { reason })) {
      this.log.warn("message expired", { id: message.id, toNode: message.toNode, method: message.method, reason });
      this.hooks.onFailed(message, reason);
    }
  }

  /** `_online.<node>`, believed only when that node signed it and it is newer than the last one. */
  private onOnline(node: string, subject: string, bytes: Uint8Array): void {
    const presence = this.wire.open(subject, bytes, node)?.value as Partial<Presence> | undefined;
    if (!presence || presence.node !== node || typeof presence.at !== "number") return;
    if (presence.at <= (this.lastOnline.get(node) ?? 0)) return;
    this.lastOnline.set(node, presence.at);
    this.wake(node);
    for (const listener of this.onlineListeners.get(node) ?? []) listener();
  }

  /**
   * Call `listener` each time `node` announces itself (it started, or its link came back) until the returned
   * function is called: what was sent to it before and not answered yet will not be.
   */
  whenOnline(node: string, listener: () => void): () => void {
    let set = this.onlineListeners.get(node);
    if (!set) this.onlineListeners.set(node, (set = new Set()));
    set.add(listener);
    this.watch(node);
    return () => {
      if (!set.delete(listener)) return;
      if (set.size === 0) this.onlineListeners.delete(node);
      this.unwatch(node);
    };
  }

  /** Wait `ms`, or less when woken (a node came back); true when woken. */
  private sleep(node: string, id: string, ms: number): Promise<boolean> {
    // Closing: close() woke every waiter already; one that starts now would hold the close for its whole wait.
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const end = (woken: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        this.unwatch(node);
        resolve(woken);
      };
      const waiter: Waiter = { node, id, wake: () => end(true) };
      const timer = setTimeout(() => end(false), Math.min(ms, MAX_TIMER_MS));
      this.waiters.add(waiter);
      this.watch(node);
    });
  }

  /**
   * Listen for `_online.<node>` only while messages wait for that node: a
   * fleet-wide reconnect then costs each node the announcements of the peers
   * it has pending messages for, not those of the whole fleet.
   */
  private watch(node: string): void {
    const w = this.watching.get(node);
    if (w) w.count++;
    else
      this.watching.set(node, {
        count: 1,
        end: this.transport.subscribe(onlineSubject(node), (msg) => this.onOnline(node, msg.subject, msg.data)),
      });
  }

  private unwatch(node: string): void {
    const w = this.watching.get(node);
    if (!w) return;
    if (--w.count > 0) return;
    w.end();
    this.watching.delete(node);
  }

  /** Stop all tasks; their messages stay in the store and resume at the next start. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await Promise.allSettled([...this.tasks]);
  }
}
