/**
 * Copy: a 200 MiB file from node "central" to node "ship" (each its own process) through a local broker, with
 * copySrc/copyDst, against the same bytes published raw on the same broker (a plain nats.js publisher and
 * subscriber, chunk for chunk, then a flush) and against `cp` on the same disk, in alternating rounds (the
 * machine's speed drifts; the medians are compared). Then the same copy again with a SIGKILL of the
 * destination half way: the time from its restart to the copy done.
 */
import { connect } from "@nats-io/transport-node";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { submit, waitForFinal } from "../src/client/client.js";
import { DEFAULT_CHUNK_SIZE, WINDOW } from "../src/methods/copySrc.js";
import { Bench, fmt, median, msSince, now, type Row } from "./lib/common.js";

const MiB = 1024 * 1024;

export interface CopyOptions {
  /** Bytes of the file. */
  size?: number;
  chunkSize?: number;
  /** Measure the resume after a SIGKILL too (default true). */
  resume?: boolean;
  /** Alternating rounds of the Steward copy and the raw publish (default 3). */
  rounds?: number;
}

export async function copy(opts: CopyOptions = {}): Promise<Row[]> {
  const size = opts.size ?? 200 * MiB;
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const bench = await Bench.start("copy");
  try {
    const central = await bench.processNode("central", "central");
    const ship = await bench.processNode("ship", "central", { startPubREQHello: 1 });
    await waitTrusted(central.socketPath, "ship");
    const src = join(bench.dir, "file.bin");
    writeRandom(src, size);

    // Steward: copySrc to central, its chunks to ship.
    const copyTo = async (dstPath: string, during?: () => Promise<void>): Promise<number> => {
      const t0 = now();
      const [answer] = await submit(
        central.socketPath,
        JSON.stringify({
          toNode: "central",
          method: "copySrc",
          methodArgs: [src, "ship", dstPath, String(chunkSize), "900", ""],
          methodTimeout: 900,
          replyMethod: "none",
        }),
      );
      if (!answer?.ok) throw new Error(`copySrc not accepted: ${JSON.stringify(answer)}`);
      await during?.();
      const m = (await waitForFinal(central.socketPath, [answer.id], { timeoutMs: 900_000 })).get(answer.id);
      if (m?.state !== "done") throw new Error(`the copy ended ${m?.state}: ${m?.reason ?? m?.result?.error ?? ""}`);
      return msSince(t0);
    };
    // Raw NATS: the same chunks published on the same broker, received by a plain subscriber.
    const stewardRounds: number[] = [];
    const rawRounds: number[] = [];
    for (let round = 1; round <= (opts.rounds ?? 3); round++) {
      stewardRounds.push(await copyTo(`copy${round}.bin`));
      rmSync(join(ship.dataFolder, `copy${round}.bin`));
      rawRounds.push(await rawPublish(bench.broker.url, src, chunkSize));
    }
    const stewardMs = median(stewardRounds);
    const rawMs = median(rawRounds);

    // cp on the same disk.
    const t0 = now();
    execFileSync("cp", [src, join(bench.dir, "cp.bin")]);
    execFileSync("sync");
    const cpMs = msSince(t0);

    // Resume: SIGKILL the destination once it holds about half the chunks, restart it, time until done.
    const count = Math.ceil(size / chunkSize);
    let heldAtKill = 0;
    let restarted = now();
    const dstFolder = ship.dataFolder;
    if (opts.resume !== false)
      await copyTo("resumed.bin", async () => {
        const deadline = Date.now() + 600_000;
        while ((heldAtKill = held(dstFolder)) < count / 2 && Date.now() < deadline) await sleep(20);
        await ship.kill();
        restarted = now();
        await ship.start();
      });
    const resumeMs = msSince(restarted);

    const rate = (ms: number) => size / MiB / (ms / 1000);
    const s = rate(stewardMs);
    const b = rate(rawMs);
    return [
      {
        name: `Copy ${fmt(size / MiB, 0)} MiB node → node (MiB/s)`,
        steward: fmt(s),
        baseline: fmt(b),
        ratio: `${fmt((100 * s) / b, 1)}%`,
        target: "≥ 50%",
        met: s / b >= 0.5,
        notes: [
          `copy: chunks of ${fmt(chunkSize / 1024, 0)} KiB, up to ${WINDOW} in flight; medians of ${stewardRounds.length} ` +
            `alternating rounds: steward ${fmt(stewardMs / 1000)} s, raw NATS publish ${fmt(rawMs / 1000)} s; ` +
            `cp ${fmt(cpMs / 1000)} s (${fmt(rate(cpMs))} MiB/s, with sync)`,
          `copy rounds (MiB/s): steward ${stewardRounds.map((ms) => fmt(rate(ms), 0)).join(", ")}; ` +
            `raw NATS ${rawRounds.map((ms) => fmt(rate(ms), 0)).join(", ")}`,
          `copy: destination SIGKILLed holding ${heldAtKill} of ${count} chunks; from its restart to the copy done ` +
            `${fmt(resumeMs / 1000)} s (the rest at ${fmt(((count - heldAtKill) * chunkSize) / MiB / (resumeMs / 1000))} MiB/s, start-up included)`,
        ],
      },
    ];
  } finally {
    await bench.close();
  }
}

function writeRandom(path: string, size: number): void {
  const fd = openSync(path, "w");
  try {
    const block = randomBytes(4 * MiB);
    for (let at = 0; at < size; at += block.length) writeSync(fd, block, 0, Math.min(block.length, size - at));
  } finally {
    closeSync(fd);
  }
}

/** Chunks the destination holds of the copy in progress (its chunks file's lines). */
function held(folder: string): number {
  try {
    const file = readdirSync(folder).find((f) => f.endsWith(".part.chunks"));
    return file ? readFileSync(join(folder, file), "utf8").split("\n").length - 2 : 0;
  } catch {
    return 0;
  }
}

/** Publish the file chunk by chunk, flush, and wait until the subscriber has every byte; ms taken. */
async function rawPublish(url: string, path: string, chunkSize: number): Promise<number> {
  const sub = await connect({ servers: url, name: "bench-copy-sub", noAsyncTraces: true });
  const pub = await connect({ servers: url, name: "bench-copy-pub", noAsyncTraces: true });
  try {
    const data = readFileSync(path);
    let got = 0;
    const all = new Promise<void>((resolve) => {
      sub.subscribe("raw.copy", {
        callback: (_err, msg) => {
          got += msg.data.length;
          if (got >= data.length) resolve();
        },
      });
    });
    await sub.flush();
    const t0 = now();
    for (let at = 0; at < data.length; at += chunkSize) pub.publish("raw.copy", data.subarray(at, at + chunkSize));
    await pub.flush();
    await all;
    return msSince(t0);
  } finally {
    await pub.close();
    await sub.close();
  }
}

async function waitTrusted(socketPath: string, node: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const [answer] = await submit(socketPath, JSON.stringify({ toNode: node, method: "ping" }));
    if (answer?.ok) {
      const m = (await waitForFinal(socketPath, [answer.id], { timeoutMs: 10_000 })).get(answer.id);
      if (m?.state === "done") return;
    }
    await sleep(200);
  }
  throw new Error(`${node} is not admitted by central`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
