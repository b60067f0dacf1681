/**
 * One node's delivery parts in this process — a real Store on a temp folder,
 * the Transport, Outbox and Inbox — on a real nats-server, plus a plain NATS
 * connection that plays the peer: it sends envelopes and reads the ACKs, or
 * subscribes as the receiver and answers (or not) as a test wants.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Inbox } from "../../src/delivery/inbox.js";
import { Outbox } from "../../src/delivery/outbox.js";
import { Transport } from "../../src/delivery/transport.js";
import { type Ack, decodeJson, encode } from "../../src/delivery/wire.js";
import { LocalNatsServer } from "../../src/harness/natsServer.js";
import { createLogger } from "../../src/log.js";
import type { Envelope } from "../../src/message/message.js";
import type { MethodName } from "../../src/message/methods.js";
import type { AllowedNodes } from "../../src/methods/method.js";
import { Store } from "../../src/store/store.js";

export interface DeliveryNode {
  dir: string;
  broker: LocalNatsServer;
  store: Store;
  transport: Transport;
  outbox: Outbox;
  inbox: Inbox;
  /** The peer's own connection to the broker. */
  peer: NatsConnection;
  /** What the node reported to central's error log. */
  reported: string[];
  /** Send `message` on `subject` as a peer would, and return the node's answer. */
  send(subject: string, message: unknown, timeoutMs?: number): Promise<Ack>;
  close(): Promise<void>;
}

/** Start node `nodeName`'s delivery parts with these subscribers, on a broker of its own. */
export async function startDeliveryNode(
  nodeName: string,
  subscribers: Partial<Record<MethodName, AllowedNodes>> = {},
): Promise<DeliveryNode> {
  const dir = mkdtempSync(join(tmpdir(), "steward-test-delivery-parts-"));
  const broker = await LocalNatsServer.start({ dir: join(dir, "broker") });
  mkdirSync(join(dir, "data")); // the methods' working folder, as the node makes it
  const log = createLogger(nodeName, "error");
  const store = new Store(join(dir, "var"), nodeName);
  const transport = new Transport({ brokerAddress: broker.url, nodeName, retryInterval: 1, log });
  const reported: string[] = [];
  const outbox = new Outbox(store, transport, log, { onFailed: (_message, reason) => reported.push(reason) });
  const inbox = new Inbox({
    nodeName,
    dataFolder: join(dir, "data"),
    allowedNodes: subscribers,
    maxOutput: 1024 * 1024,
    store,
    outbox,
    transport,
    log,
    reportError: (e) => reported.push(e.reason),
    onHello: () => undefined,
  });
  inbox.start();
  const link = transport.run();
  await transport.whenUp();
  const peer = await connect({ servers: broker.url });
  return {
    dir,
    broker,
    store,
    transport,
    outbox,
    inbox,
    peer,
    reported,
    async send(subject, message, timeoutMs = 5000) {
      const answer = await peer.request(subject, encode(message), { timeout: timeoutMs });
      return decodeJson(answer.data) as Ack;
    },
    async close() {
      await inbox.close(1000);
      await outbox.close();
      await peer.close();
      await transport.close();
      await link;
      store.close();
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An envelope with the seeds' defaults, from `fromNode` to `toNode`. */
export function envelope(fields: Partial<Envelope> & Pick<Envelope, "id" | "fromNode" | "toNode">): Envelope {
  return {
    method: "cliCommand",
    methodArgs: [],
    replyMethod: "none",
    replyMethodArgs: [],
    ACKTimeout: 5,
    retries: 0,
    retryWait: 0,
    replyACKTimeout: 5,
    replyRetries: 0,
    methodTimeout: 10,
    replyMethodTimeout: 10,
    attempt: 1,
    ...fields,
  };
}
