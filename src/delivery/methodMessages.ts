/**
 * The messages a method sends itself (copySrc's status and finish steps): each stored in the outbox table and delivered by the
 * outbox like an operator's message, so it is signed, ACKed, retried and deduplicated by the same machinery.
 * One listener on the store's final moves serves every wait; it reads a message's outcome, never its envelope.
 */
import { errorText } from "../errors.js";
import type { Envelope } from "../message/message.js";
import { isFinal } from "../message/message.js";
import type { MessageSender, SentOutcome } from "../methods/method.js";
import type { Store } from "../store/store.js";
import type { Outbox } from "./outbox.js";

export class MethodMessages implements MessageSender {
  private readonly waiting = new Map<string, Set<(rec: SentOutcome) => void>>();

  constructor(
    private readonly store: Store,
    private readonly outbox: Outbox,
  ) {
    store.outgoing.onFinal((id) => {
      const waiters = this.waiting.get(id);
      if (!waiters) return;
      const rec = store.outgoing.outcome(id);
      if (!rec) return;
      this.waiting.delete(id);
      for (const wake of waiters) wake(rec);
    });
  }

  async send(envelope: Envelope): Promise<boolean> {
    const fresh = this.store.outgoing.add(envelope);
    // Sent once on disk, as an operator's message is; one stored before a restart is the outbox's already.
    if (fresh) {
      await this.store.durable();
      this.outbox.deliver({ envelope, attempt: 0 });
    }
    return fresh;
  }

  outcome(id: string, signal: AbortSignal): Promise<SentOutcome> {
    return new Promise((resolve, reject) => {
      const done = (rec: SentOutcome) => {
        signal.removeEventListener("abort", onAbort);
        resolve(rec);
      };
      const onAbort = () => {
        this.waiting.get(id)?.delete(done);
        reject(signal.reason instanceof Error ? signal.reason : new Error(errorText(signal.reason)));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      let waiters = this.waiting.get(id);
      if (!waiters) this.waiting.set(id, (waiters = new Set()));
      waiters.add(done);
      // Ended before the wait began (or before a restart): no move will come.
      const rec = this.store.outgoing.outcome(id);
      if (rec && isFinal(rec.state)) {
        waiters.delete(done);
        if (waiters.size === 0) this.waiting.delete(id);
        done(rec);
      }
    });
  }
}
