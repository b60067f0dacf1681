/**
 * 7. Signing: what ed25519 costs a ping round trip, side by side with the
 * round trip itself, in one run.
 *
 * a) seal and open (src/security/frame.ts, the nodes' own keys) on the real
 *    frames of a ping round trip, captured off the broker: the ping, its ACK,
 *    the pong, its ACK, and a "running" notice (a ping runs too briefly to send
 *    one: it is built as the runner builds it).
 * b) the crypto on the round trip's critical path, counted from the code:
 *    a seals the ping (outbox), b opens it (inbox), b seals the ACK (inbox),
 *    a opens it (outbox), b seals the pong (outbox), a opens it (inbox) —
 *    3 seals and 3 opens. a's ACK of the pong is sealed once the pong is on
 *    a's disk (it may run on a's thread just before the measured end) and
 *    opened by b off the path; no notice is sent for a run under 100 ms.
 * c) the round trip p50 and the raw NATS request p50, measured as
 *    bench/roundTrip.ts measures them (alternating), in rounds; the crypto per
 *    round trip as a share of the Steward p50; and the CPU of this process
 *    (node a) and of node b per round trip.
 */
import { connect } from "@nats-io/transport-node";
import { sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { methodSubject, stateSubject } from "../src/delivery/subjects.js";
import { open, readHeader, seal } from "../src/security/frame.js";
import {
  type Identity,
  loadOrCreateIdentity,
  parsePublicKey,
  type PublicKey,
  SIGNER_LIBRARY,
} from "../src/security/identity.js";
import { Bench, fmt, median, msSince, now, percentile, type Row, waitUntil } from "./lib/common.js";
import { rawClient, RawResponder, rawRoundTrip } from "./lib/raw.js";

export interface SigningOptions {
  /** Rounds of each measurement: the spread between rounds is the noise. */
  rounds?: number;
  /** Seals (and opens) of each frame per round. */
  iterations?: number;
  /** Round trips of each kind per round. */
  roundTrips?: number;
  warmup?: number;
}

/** A frame of the round trip: who seals it, for which subject, and its body as it travelled. */
interface Frame {
  name: string;
  signer: Identity;
  subject: string;
  body: Uint8Array;
  bytes: number;
}

/** Seals and opens on a ping round trip's critical path (see the header). */
const ON_PATH = { seal: ["ping", "ACK of ping", "pong"], open: ["ping", "ACK of ping", "pong"] };

/** CPU seconds (user + system) a process has used, from /proc; NaN when /proc cannot tell. */
function cpuOf(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

export async function signing(opts: SigningOptions = {}): Promise<Row[]> {
  const rounds = opts.rounds ?? 5;
  const iterations = opts.iterations ?? 2000;
  const roundTrips = opts.roundTrips ?? 200;
  const warmup = opts.warmup ?? 200;
  const bench = await Bench.start("signing");
  const out = (line: string) => process.stderr.write(`\n  ${line}`);
  try {
    const a = await bench.inProcessNode("a", "a");
    const b = await bench.processNode("b", "a");
    const responder = await RawResponder.start(bench.broker.url, "raw.echo");
    bench.onClose(() => responder.stop());
    const nc = await rawClient(bench.broker.url);
    bench.onClose(() => nc.close());

    const ping = async (): Promise<number> => {
      const t0 = now();
      const [id] = await a.accept({ toNode: "b", method: "ping" });
      const s = await a.final(id as string);
      if (s.state !== "done") throw new Error(`ping ${s.id} ended ${s.state}`);
      return msSince(t0);
    };

    // The real frames: one ping round trip, captured off the broker.
    const spy = await connect({ servers: bench.broker.url, name: "bench-signing-spy" });
    bench.onClose(() => spy.close());
    const seen: { subject: string; data: Uint8Array }[] = [];
    spy.subscribe(">", {
      callback: (_err, msg) => {
        seen.push({ subject: msg.subject, data: msg.data });
      },
    });
    await spy.flush();
    await ping();
    const keys = {
      a: a.node.trust.identity,
      b: loadOrCreateIdentity(join(bench.dir, "b", "etc"), "b").identity,
    };
    const frameOf = (name: string, test: (subject: string, text: string) => boolean): Frame => {
      const found = seen.find((m) => test(m.subject, new TextDecoder().decode(m.data)));
      const header = found && readHeader(found.data);
      if (!found || !header) throw new Error(`no ${name} frame seen on the broker`);
      const signer = header.signer === "a" ? keys.a : keys.b;
      return { name, signer, subject: found.subject, body: header.body, bytes: found.data.length };
    };
    await waitUntil(() => seen.filter((m) => m.subject.startsWith("_INBOX.")).length >= 2, 5000, "both ACKs");
    const frames = [
      frameOf("ping", (s) => s === methodSubject("b", "ping", "a")),
      frameOf("ACK of ping", (s, t) => s.startsWith("_INBOX.") && t.startsWith("SW1 b ")),
      frameOf("pong", (s) => s === methodSubject("a", "pong", "b")),
      frameOf("ACK of pong", (s, t) => s.startsWith("_INBOX.") && t.startsWith("SW1 a ")),
    ];
    const ping0 = JSON.parse(new TextDecoder().decode(frames[0]?.body)) as { id: string };
    const notice = new TextEncoder().encode(JSON.stringify({ id: ping0.id, state: "running" }));
    frames.push({ name: "running notice", signer: keys.b, subject: stateSubject("a", "b"), body: notice, bytes: 0 });
    await spy.close();

    // a) Seal and open, µs each, per round.
    const publicKeys = new Map<string, PublicKey>([
      ["a", parsePublicKey(keys.a.publicKey) as PublicKey],
      ["b", parsePublicKey(keys.b.publicKey) as PublicKey],
    ]);
    const keyOf = (name: string) => publicKeys.get(name);
    const perFrame = new Map<string, { seal: number[]; open: number[] }>();
    for (const f of frames) {
      const sealed = seal(f.signer, f.subject, f.body);
      f.bytes = sealed.length;
      const t = { seal: [] as number[], open: [] as number[] };
      for (let i = 0; i < iterations; i++) seal(f.signer, f.subject, f.body); // warm-up
      for (let r = 0; r < rounds; r++) {
        let t0 = now();
        for (let i = 0; i < iterations; i++) seal(f.signer, f.subject, f.body);
        t.seal.push((msSince(t0) * 1000) / iterations);
        t0 = now();
        for (let i = 0; i < iterations; i++) if (!open(sealed, f.subject, keyOf).ok) throw new Error("open failed");
        t.open.push((msSince(t0) * 1000) / iterations);
      }
      perFrame.set(f.name, t);
    }
    out(`a) seal and open (ed25519 by ${SIGNER_LIBRARY}, the nodes' keys), µs each: ${rounds} rounds of ${iterations}`);
    for (const f of frames) {
      const t = perFrame.get(f.name) as { seal: number[]; open: number[] };
      out(
        `   ${f.name.padEnd(15)} ${String(f.bytes).padStart(4)} B   seal ${fmt(median(t.seal))} [${t.seal.map((v) => fmt(v)).join(" ")}]   open ${fmt(median(t.open))} [${t.open.map((v) => fmt(v)).join(" ")}]`,
      );
    }
    // The same bytes through node:crypto (OpenSSL) alone: the implementation a node falls back to without libsodium.
    const pingFrame = frames[0] as Frame;
    const signed = Buffer.concat([
      new TextEncoder().encode(`SW1 ${pingFrame.signer.name}\n${pingFrame.subject}\n`),
      pingFrame.body,
    ]);
    const signature = sign(null, signed, pingFrame.signer.key);
    const bare = { sign: [] as number[], verify: [] as number[] };
    const pub = (publicKeys.get(pingFrame.signer.name) as PublicKey).node;
    for (let r = 0; r < rounds; r++) {
      let t0 = now();
      for (let i = 0; i < iterations; i++) sign(null, signed, pingFrame.signer.key);
      bare.sign.push((msSince(t0) * 1000) / iterations);
      t0 = now();
      for (let i = 0; i < iterations; i++) verify(null, signed, pub, signature);
      bare.verify.push((msSince(t0) * 1000) / iterations);
    }
    out(
      `   node:crypto ed25519 alone, the ping's bytes: sign ${fmt(median(bare.sign))} [${bare.sign.map((v) => fmt(v)).join(" ")}]   verify ${fmt(median(bare.verify))} [${bare.verify.map((v) => fmt(v)).join(" ")}]`,
    );
    const med = (name: string, op: "seal" | "open") => median(perFrame.get(name)?.[op] ?? []);
    const cryptoUs =
      ON_PATH.seal.reduce((s, n) => s + med(n, "seal"), 0) + ON_PATH.open.reduce((s, n) => s + med(n, "open"), 0);
    const allUs = frames
      .filter((f) => f.name !== "running notice")
      .reduce((s, f) => s + med(f.name, "seal") + med(f.name, "open"), 0);
    out(
      `b) on the critical path: ${ON_PATH.seal.length} seals (${ON_PATH.seal.join(", ")}) + ${ON_PATH.open.length} opens (${ON_PATH.open.join(", ")}) = ${fmt(cryptoUs, 1)} µs per round trip; with the ACK of the pong (off the path) ${fmt(allUs, 1)} µs`,
    );

    // c) The round trip, alternating with the raw baseline as roundTrip.ts does; CPU over the Steward pings only.
    const size = JSON.stringify(a.node.store.outgoing.get(ping0.id)?.envelope ?? {}).length;
    const raw = rawRoundTrip(nc, size);
    for (let i = 0; i < warmup; i++) {
      await ping();
      await raw();
    }
    const steward: number[] = [];
    const baseline: number[] = [];
    const cpuA: number[] = [];
    const cpuB: number[] = [];
    out(
      `c) round trips: ${rounds} rounds of ${roundTrips} each kind (alternating), then ${roundTrips} pings for the CPU`,
    );
    for (let r = 0; r < rounds; r++) {
      const s: number[] = [];
      const base: number[] = [];
      for (let i = 0; i < roundTrips; i++) {
        s.push(await ping());
        base.push(await raw());
      }
      const c0 = process.cpuUsage();
      const b0 = cpuOf(b.pid);
      for (let i = 0; i < roundTrips; i++) await ping();
      const c = process.cpuUsage(c0);
      cpuA.push((c.user + c.system) / roundTrips);
      cpuB.push(((cpuOf(b.pid) - b0) * 1e6) / roundTrips);
      steward.push(...s);
      baseline.push(...base);
      const p50 = median(s);
      out(
        `   round ${r + 1}: Steward p50 ${fmt(p50, 3)} ms, raw p50 ${fmt(median(base), 3)} ms, crypto ${fmt((cryptoUs / 1000 / p50) * 100, 1)}% of the Steward p50; CPU per round trip: a ${fmt(cpuA[r] ?? Number.NaN, 0)} µs, b ${fmt(cpuB[r] ?? Number.NaN, 0)} µs`,
      );
    }
    process.stderr.write("\n");
    const s50 = percentile(steward, 50);
    const b50 = percentile(baseline, 50);
    const share = (cryptoUs / 1000 / s50) * 100;
    const cpuPerRt = median(cpuA);
    return [
      {
        name: "Signing: crypto per ping round trip (µs)",
        steward: fmt(cryptoUs, 1),
        baseline: "—",
        ratio: "—",
        target: "—",
        notes: [
          `signing: ${ON_PATH.seal.length} seals + ${ON_PATH.open.length} opens on a ping round trip's critical path (medians of ${rounds} rounds of ${iterations}); ${frames
            .map(
              (f) => `${f.name} ${f.bytes} B seal ${fmt(med(f.name, "seal"))} µs open ${fmt(med(f.name, "open"))} µs`,
            )
            .join("; ")}`,
        ],
      },
      {
        name: "Signing: crypto share of the round trip p50",
        steward: `${fmt(share, 1)}%`,
        baseline: "—",
        ratio: "—",
        target: "< 10%",
        met: share < 10,
        notes: [
          `signing: round trip p50 ${fmt(s50, 3)} ms, raw NATS request p50 ${fmt(b50, 3)} ms (${rounds * roundTrips} each, alternating, after ${warmup} warm-up; ping envelope ${size} bytes)`,
        ],
      },
      {
        name: "Signing: CPU per ping round trip, sender a / receiver b (µs)",
        steward: `${fmt(cpuPerRt, 0)} / ${fmt(median(cpuB), 0)}`,
        baseline: "—",
        ratio: "—",
        target: "—",
        notes: [
          `signing: CPU per message (ping or pong) on a: ${fmt(cpuPerRt / 2, 0)} µs, of which the crypto on a's side (seal ping, open ACK, open pong, seal ACK of pong) ${fmt(med("ping", "seal") + med("ACK of ping", "open") + med("pong", "open") + med("ACK of pong", "seal"), 1)} µs per round trip`,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}
