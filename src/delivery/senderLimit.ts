/**
 * How much one node can make this one store: a token bucket per signer,
 * checked in the inbox just before a message would be stored. Each signer may
 * store `burst` messages at once, then `perSecond` a second. Over that, the
 * message is not stored and its sender is told to try again later ("busy",
 * see inbox.ts); its outbox waits and re-sends without spending a retry
 * (outbox.ts), so a busy receiver never makes a sender lose a message.
 */

/** The longest a busy answer asks a sender to wait; the sender's own clamp is the same. */
export const MAX_BUSY_MS = 60_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class SenderLimit {
  private readonly buckets = new Map<string, Bucket>();

  /** `perSecond` 0: no limit. */
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  /** Take one message's token for `signer`: undefined when it may be stored, else the milliseconds to wait. */
  take(signer: string, now = Date.now()): number | undefined {
    if (this.perSecond <= 0) return undefined;
    const capacity = Math.max(1, this.burst);
    let b = this.buckets.get(signer);
    if (!b) {
      // Signers are verified, admitted nodes; still, a bundle admitting very many must not grow this without end.
      // The oldest bucket goes (a Map keeps insertion order), not all of them: no sender gets its burst back.
      if (this.buckets.size >= 10_000) this.buckets.delete(this.buckets.keys().next().value as string);
      b = { tokens: capacity, at: now };
      this.buckets.set(signer, b);
    }
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return Math.min(MAX_BUSY_MS, Math.ceil(((1 - b.tokens) / this.perSecond) * 1000));
  }
}
