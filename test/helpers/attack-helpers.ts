/**
 * The attacker's tools for test/attacks.test.ts: a plain NATS connection with
 * no Steward key (or with keys it made itself), that forges, captures and
 * replays frames against real node processes, and reads the nodes' metrics
 * to know when a node has dealt with what it was sent.
 *
 * To show that a forged request got no answer without timing it, every
 * request goes out with a reply subject of the attacker's own (`_ATTACK.<n>`)
 * and every answer is kept: a test waits until the victim counted the frame
 * (its metrics) and then looks at what came back.
 */
import { connect, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { query } from "../../src/client/client.js";
import { decodeJson, encode } from "../../src/delivery/wire.js";
import { type Fleet, sleepUntil } from "../../src/harness/fleet.js";
import type { NodeProcess } from "../../src/harness/nodeProcess.js";
import { open, readHeader, seal } from "../../src/security/frame.js";
import { type Identity, loadOrCreateIdentity, parsePublicKey } from "../../src/security/identity.js";

/** A frame as it travelled: its subject, bytes and the reply subject of its request. */
export interface Captured {
  subject: string;
  data: Uint8Array;
  reply: string;
}

/** The answers one forged request got. */
export interface Sent {
  inbox: string;
  answers: Msg[];
}

export class Attacker {
  private n = 0;
  private readonly inboxes = new Map<string, Sent>();
  private readonly sub: Subscription;

  private constructor(readonly nc: NatsConnection) {
    this.sub = nc.subscribe("_ATTACK.>", {
      callback: (_err, msg) => {
        this.inboxes.get(msg.subject)?.answers.push(msg);
      },
    });
  }

  static async connect(url: string): Promise<Attacker> {
    return new Attacker(await connect({ servers: url }));
  }

  /** Publish `bytes` on `subject` as a request; its answers, if any, collect in the returned record. */
  async request(subject: string, bytes: Uint8Array): Promise<Sent> {
    const sent: Sent = { inbox: `_ATTACK.${++this.n}`, answers: [] };
    this.inboxes.set(sent.inbox, sent);
    this.nc.publish(subject, bytes, { reply: sent.inbox });
    // Flushed: the broker has it before the test waits on the victim.
    await this.nc.flush();
    return sent;
  }

  /** The first answer to `sent`. */
  async answer(sent: Sent, timeoutMs = 10_000): Promise<Msg> {
    await sleepUntil(() => sent.answers.length > 0, { timeoutMs, what: `an answer on ${sent.inbox}` });
    return sent.answers[0] as Msg;
  }

  /** Keep every frame published on `subject` (a wildcard) until the returned stop is called. */
  /** `ready` resolves once the broker has the subscription: frames sent after it are captured. */
  capture(subject: string): { frames: Captured[]; stop: () => void; ready: Promise<void> } {
    const frames: Captured[] = [];
    const sub = this.nc.subscribe(subject, {
      callback: (_err, msg) => {
        frames.push({ subject: msg.subject, data: msg.data, reply: msg.reply ?? "" });
      },
    });
    return { frames, stop: () => sub.unsubscribe(), ready: this.nc.flush() };
  }

  async close(): Promise<void> {
    this.sub.unsubscribe();
    await this.nc.close();
  }
}

/** A key the attacker made, under any name it likes ("central", "mallory"…). */
export function forgedIdentity(dir: string, name: string): Identity {
  return loadOrCreateIdentity(join(dir, `forged-${name}`), name).identity;
}

/** A fleet node's own key, read from its configFolder: what an attacker who took over that node holds. */
export function nodeIdentity(node: NodeProcess): Identity {
  return loadOrCreateIdentity(join(node.opts.dir, "etc"), node.opts.nodeName).identity;
}

/** `value` as JSON signed by `as` for `subject`; no `as`: plain JSON, unsigned. */
export function forge(as: Identity | undefined, subject: string, value: unknown): Uint8Array {
  return as ? seal(as, subject, encode(value)) : encode(value);
}

/** The JSON body of a frame, read without checking its signature. */
export function frameBody(bytes: Uint8Array): Record<string, unknown> {
  return decodeJson(readHeader(bytes)?.body ?? bytes) as Record<string, unknown>;
}

/** The answer's body, only when `signer` signed it for the subject it came on. */
export function openAnswer(msg: Msg, signer: Identity): unknown {
  const opened = open(msg.data, msg.subject, (name) =>
    name === signer.name ? parsePublicKey(signer.publicKey) : undefined,
  );
  if (!opened.ok) throw new Error(`the answer on ${msg.subject} is not signed by ${signer.name}: ${opened.problem}`);
  return decodeJson(opened.body);
}

/** One node's Prometheus endpoint. */
export class Metrics {
  constructor(private readonly port: number) {}

  async text(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    return res.text();
  }

  /** The value of one series, e.g. `steward_unverified_dropped_total{reason="unsigned"}`; 0 when absent. */
  async value(series: string): Promise<number> {
    const line = (await this.text()).split("\n").find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  }

  /** Frames dropped unverified, per reason ("unsigned", "bad signature", "unknown signer", "wrong signer"…). */
  async dropped(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const line of (await this.text()).split("\n")) {
      const m = /^steward_unverified_dropped_total\{reason="([^"]*)"\} (\S+)$/.exec(line);
      if (m) out[m[1] as string] = Number(m[2]);
    }
    return out;
  }

  /**
   * Run `attack`, then wait until the node has dropped at least `expected` more frames per reason than before
   * it: the positive signal that the node has dealt with (and refused) what the attack sent.
   */
  async dropsDuring<T>(expected: Record<string, number>, attack: () => Promise<T>): Promise<T> {
    const before = await this.dropped();
    const result = await attack();
    let now: Record<string, number> = {};
    await sleepUntil(
      async () => {
        now = await this.dropped();
        return Object.entries(expected).every(([k, n]) => (now[k] ?? 0) - (before[k] ?? 0) >= n);
      },
      {
        what: () => `drops ${JSON.stringify(expected)} (before ${JSON.stringify(before)}, now ${JSON.stringify(now)})`,
      },
    );
    return result;
  }
}

/** Wait until central admitted `names` and every one of them (and central) holds central's latest bundle. */
export async function waitTrust(fleet: Fleet, names: string[]): Promise<void> {
  const central = fleet.node("central");
  await sleepUntil(
    async () => {
      const keys = await query(central.socketPath, "keys", {});
      const admitted = new Set(keys.keys.filter((k) => k.state === "approved").map((k) => k.name));
      if (!names.every((n) => admitted.has(n))) return false;
      for (const n of names) {
        const h = await query(fleet.node(n).socketPath, "health", {});
        if (h.bundle !== keys.bundle) return false;
      }
      return true;
    },
    { what: `every node to hold central's bundle with ${names.join(", ")}` },
  );
}

/** Every file under `dir` whose content includes `text`. */
export function filesContaining(dir: string, text: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesContaining(path, text));
    else if (readFileSync(path, "utf8").includes(text)) out.push(path);
  }
  return out;
}
