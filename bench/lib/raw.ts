/**
 * The baseline: plain nats.js request/reply, with no store and no Steward.
 * The responder is its own process, as a Steward target is, started without
 * any loader (`node -e`), so that its start time and memory are those of a
 * bare nats.js client too.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type ChildProcess, spawn } from "node:child_process";
import { msSince, now, ROOT } from "./common.js";

/** Answers every request on `subject` with a short ACK-like payload. */
const RESPONDER = `
import { connect } from "@nats-io/transport-node";
const [url, subject] = process.argv.slice(1);
const nc = await connect({ servers: url, name: "bench-raw-responder" });
const ack = new TextEncoder().encode('{"ack":"01JBENCHRAWRESPONDER0000000"}');
nc.subscribe(subject, { callback: (_err, msg) => msg.respond(ack) });
await nc.flush();
process.stdout.write("ready\\n");
process.once("SIGTERM", () => nc.close().then(() => process.exit(0)));
`;

export class RawResponder {
  private exited: Promise<void>;
  private constructor(
    readonly child: ChildProcess,
    /** Milliseconds from spawn until it was subscribed on the broker. */
    readonly readyMs: number,
  ) {
    this.exited = new Promise((r) => child.once("exit", () => r()));
  }

  static async start(url: string, subject: string): Promise<RawResponder> {
    const t0 = now();
    const child = spawn(process.execPath, ["--input-type=module", "-e", RESPONDER, url, subject], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("raw responder not ready within 10 s")), 10_000);
      child.once("exit", (code) => reject(new Error(`raw responder exited (${code})`)));
      child.stdout?.setEncoding("utf8");
      child.stdout?.on("data", (d: string) => {
        if (d.includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return new RawResponder(child, msSince(t0));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    await this.exited;
  }
}

/** The requesting side of the baseline, in this process. */
export async function rawClient(url: string): Promise<NatsConnection> {
  // The same connection options as Steward's own link (no async stack traces per request): a fair baseline.
  return connect({ servers: url, name: "bench-raw-requester", noAsyncTraces: true });
}

/** A request of about the size of a Steward ping on the wire, so both carry the same bytes. */
export function rawPayload(bytes = 420): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ data: "x".repeat(Math.max(0, bytes - 11)) }));
}

/** One timed raw round trip of `bytes` to the responder on `subject`: the baseline beside a Steward ping. */
export function rawRoundTrip(nc: NatsConnection, bytes: number, subject = "raw.echo"): () => Promise<number> {
  const payload = rawPayload(bytes);
  return async () => {
    const t0 = now();
    await nc.request(subject, payload, { timeout: 5000 });
    return msSince(t0);
  };
}
