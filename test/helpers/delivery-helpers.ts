/**
 * One node's delivery parts in this process — a real Store on a temp folder,
 * the Transport, Outbox and Inbox — on a real nats-server, plus a plain NATS
 * connection that plays the peer: it sends envelopes and reads the ACKs, or
 * subscribes as the receiver and answers (or not) as a test wants. The peer
 * signs as whichever node a test names (each gets a real key, admitted in a
 * bundle signed by a real "central" key); the node's rules here let every
 * admitted node call every method, as these tests are about delivery.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Inbox } from "../../src/delivery/inbox.js";
import { Outbox } from "../../src/delivery/outbox.js";
import { Rejects } from "../../src/delivery/rejects.js";
import { methodSubject } from "../../src/delivery/subjects.js";
import { Transport } from "../../src/delivery/transport.js";
import { type Ack, decodeJson, encode, Wire } from "../../src/delivery/wire.js";
import { LocalNatsServer } from "../../src/harness/natsServer.js";
import { createLogger } from "../../src/log.js";
import type { Envelope } from "../../src/message/message.js";
import type { MethodName } from "../../src/message/methods.js";
import type { AllowedNodes } from "../../src/methods/method.js";
import { type Bundle, BUNDLE_CONTEXT } from "../../src/security/bundle.js";
import { readHeader, seal } from "../../src/security/frame.js";
import { type Identity, loadOrCreateIdentity } from "../../src/security/identity.js";
import { Trust } from "../../src/security/trust.js";
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
  /**
   * Send `message` for `method` as a peer would (signed by its fromNode, else central, on the node's subject
   * for that method that names the signer as sender), and return the node's answer.
   */
  send(method: MethodName, message: unknown, timeoutMs?: number): Promise<Ack>;
  /** `value` signed by node `as` for `subject`, as that node would send it. */
  seal(subject: string, value: unknown, as: string): Uint8Array;
  /** The body of a frame the node sent, parsed (its signature is not checked here). */
  body(bytes: Uint8Array): unknown;
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
  // Keys: one per node a test names, admitted in a bundle signed by central's key (a new name: a new bundle).
  const identities = new Map<string, Identity>();
  const newIdentity = (name: string): Identity => {
    const id = loadOrCreateIdentity(join(dir, "keys", name), name).identity;
    identities.set(name, id);
    return id;
  };
  const own = loadOrCreateIdentity(join(dir, "etc"), nodeName).identity;
  identities.set(nodeName, own);
  // The node may be central itself; else central is a key of the test's own.
  const central = identities.get("central") ?? newIdentity("central");
  const trust = new Trust({
    identity: own,
    configFolder: join(dir, "etc"),
    centralNodeName: "central",
    centralPublicKey: central.publicKey,
    pinCentralKey: false,
    log,
  });
  let version = 0;
  const admit = () => {
    const nodes: Bundle["nodes"] = {};
    for (const [name, id] of identities) nodes[name] = { key: id.publicKey, groups: [], labels: {} };
    const bundle: Bundle = {
      version: ++version,
      central: "central",
      issuedAt: Date.now(),
      nodes,
      acl: { rules: [{ from: ["*"], methods: ["*"], to: ["*"] }] },
    };
    trust.offer(seal(central, BUNDLE_CONTEXT, encode(bundle)));
  };
  admit();
  const identity = (name: string): Identity => {
    const known = identities.get(name);
    if (known) return known;
    const id = newIdentity(name);
    admit();
    return id;
  };
  const rejects = new Rejects({ nodeName, log, count: () => undefined, reportError: (e) => reported.push(e.reason) });
  const wire = new Wire(trust, rejects);
  const outbox = new Outbox(store, transport, wire, log, { onFailed: (_message, reason) => reported.push(reason) });
  const inbox = new Inbox({
    nodeName,
    dataFolder: join(dir, "data"),
    allowedNodes: subscribers,
    maxOutput: 1024 * 1024,
    chunkFolder: join(dir, "chunks"),
    store,
    outbox,
    transport,
    wire,
    maxMessageAge: 3600,
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
    async send(method, message, timeoutMs = 5000) {
      const from = (message as { fromNode?: unknown }).fromNode;
      const as = typeof from === "string" && !from.includes(".") && from !== "" ? from : "central";
      const subject = methodSubject(nodeName, method, as);
      const answer = await peer.request(subject, seal(identity(as), subject, encode(message)), { timeout: timeoutMs });
      const opened = wire.open(answer.subject, answer.data, nodeName);
      if (!opened) throw new Error(`the node's answer is not signed by ${nodeName}`);
      return opened.value as Ack;
    },
    seal: (subject, value, as) => seal(identity(as), subject, encode(value)),
    body: (bytes) => decodeJson(readHeader(bytes)?.body ?? bytes),
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
    deliverBy: Date.now() + 3_600_000,
    ...fields,
  };
}
