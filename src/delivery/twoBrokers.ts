/**
 * A relay node's link (relayBrokerAddress; docs/DELIVERY.md, "Relay"): one node on two brokers, as one
 * Transport to the rest of the node. It subscribes on both, publishes on both, and sends each request on
 * both, taking the first answer: a node is on one of the two brokers, and the other has no subscriber
 * for it (answered at once). Each link keeps its own connection, reconnects and reply inbox.
 */
import type { Msg } from "@nats-io/transport-node";
import { Transport, type TransportOptions } from "./transport.js";

export class TwoBrokers extends Transport {
  constructor(
    home: TransportOptions,
    private readonly far: Transport,
  ) {
    super(home);
  }

  override async run(): Promise<void> {
    await Promise.all([super.run(), this.far.run()]);
  }

  /** Up as soon as either link is: each message goes out on whichever reaches its node. */
  override whenUp(): Promise<void> {
    return Promise.race([super.whenUp(), this.far.whenUp()]);
  }

  override onUp(listener: () => void): void {
    super.onUp(listener);
    this.far.onUp(listener);
  }

  override subscribe(subject: string, handler: (msg: Msg) => void): () => void {
    const home = super.subscribe(subject, handler);
    const far = this.far.subscribe(subject, handler);
    return () => {
      home();
      far();
    };
  }

  override get maxPayload(): number {
    return Math.min(super.maxPayload, this.far.maxPayload);
  }

  override request<T>(
    subject: string,
    data: Uint8Array,
    timeoutMs: number,
    accept: (answer: { subject: string; data: Uint8Array }) => T | undefined,
  ): Promise<T> {
    const home = super.request(subject, data, timeoutMs, accept);
    const far = this.far.request(subject, data, timeoutMs, accept);
    return Promise.any([home, far]).catch((err: AggregateError) => {
      // Both failed: say why the one that could have reached the node did (a timeout over "no subscriber").
      const errors = err.errors as Error[];
      throw errors.find((e) => !/^no subscriber|^not connected/.test(e.message)) ?? errors[0] ?? err;
    });
  }

  override publish(subject: string, data: Uint8Array): boolean {
    const home = super.publish(subject, data);
    const far = this.far.publish(subject, data);
    return home || far;
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), this.far.close()]);
  }
}
