/**
 * 10. Forgery at volume: while central streams commands to three ships, an
 * attacker on the broker with no Steward key (chaos/lib/forger.ts) replays
 * and tampers with every frame it sees — requests, replies, ACKs, `_state`
 * notices, `_online`, hellos and bundles (a fourth ship joins mid-run, so
 * that central sends a new bundle and every node announces `_online`).
 * What must hold: nothing forged runs (each run writes its message id to the
 * ship's runs log: a line for an id central never sent, or a second line, is
 * one), nothing legitimate is lost, and every message is done with the data
 * its own run printed (a forged reply moved no state on central).
 */
import { waitQuery } from "../../src/client/client.js";
import { Fleet } from "../../src/harness/fleet.js";
import { freePort } from "../../src/harness/net.js";
import { cmd, RunsLog, strangers } from "../../src/harness/runs.js";
import { Forger } from "../lib/forger.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, PATIENT, settle, since, sleep, Stream } from "../lib/tally.js";

const SHIPS = ["ship1", "ship2", "ship3"];

/** Each sample line of `name` in a Prometheus text page, by its labels. */
async function scrape(port: number, name: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const line of text.split("\n")) {
      if (!line.startsWith(name)) continue;
      const m = /^[a-z_]+(\{.*\})? (\S+)$/.exec(line);
      if (m) out.set(m[1] ?? "", Number(m[2]));
    }
  } catch {
    // Shown as no figures.
  }
  return out;
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

export const forge: Scenario = {
  name: "forge",
  title: "an attacker on the broker replays and tampers with every frame at volume",
  // messages: per ship; faults: forgeries of each kind per captured frame.
  short: { messages: 150, faults: 1, outageS: 0 },
  full: { messages: 1000, faults: 3, outageS: 0 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-forge");
    let forger: Forger | undefined;
    try {
      const prom = new Map<string, number>();
      for (const name of ["central", ...SHIPS, "ship4"]) prom.set(name, await freePort());
      const promOf = (name: string) => ({ promHostAndPort: `127.0.0.1:${prom.get(name)}` });
      await fleet.add("central", promOf("central"));
      await Promise.all(SHIPS.map((s) => fleet.add(s, promOf(s))));
      const runs = new Map(SHIPS.map((s) => [s, new RunsLog(fleet, `forge-${s}`)]));
      const runsOf = (ship: string) => runs.get(ship) ?? new RunsLog(fleet, `forge-${ship}`);
      // Every legitimate run logs its id on the ship and prints it: the data its reply must bring back.
      const then = 'echo "$STEWARD_MESSAGE_ID"';
      const streams = SHIPS.map((ship) =>
        new Stream({
          fleet,
          from: "central",
          toNode: ship,
          runs: runsOf(ship),
          prefix: `fg-${ship}`,
          total: size.messages,
          then,
          chunk: 25,
          window: 50,
        }).start(),
      );
      forger = await Forger.start({
        url: fleet.broker.url,
        nodes: ["central", ...SHIPS, "ship4"],
        forgedArgs: (toNode, id) => ["bash", "-c", `echo ${id} >> '${runsOf(toNode).path}'`],
        rounds: size.faults,
      });
      // A node joining mid-run: central admits its key and sends every node a new bundle; each announces _online.
      while (streams.reduce((n, s) => n + s.accepted.size, 0) < (size.messages * SHIPS.length) / 2) await sleep(50);
      await fleet.add("ship4", promOf("ship4"));
      log(`ship4 joined; ${forger.total} forged frames so far`);
      await Promise.all(streams.map((s) => s.finished()));
      for (const s of streams) await settle(fig, fleet, "central", s.ids, undefined);
      await forger.stop();

      // The positive signal: a message sent after the last forgery reaches each ship (and its reply central)
      // behind every forged frame, so once it is done, every node has handled every forgery.
      const sentinels = await fleet.sendOk(
        "central",
        SHIPS.map((ship) => cmd(ship, runsOf(ship).args(then), { id: `fg-last-${ship}`, ...PATIENT })),
      );
      await settle(fig, fleet, "central", sentinels, undefined);
      fig.faults = forger.total;

      // No forged run: every line in a runs log is a legitimate id, once.
      const legit = new Map(SHIPS.map((ship, i) => [ship, [...(streams[i]?.ids ?? []), `fg-last-${ship}`]]));
      for (const ship of SHIPS) {
        const ids = legit.get(ship) ?? [];
        const counts = runsOf(ship).counts();
        const forged = strangers(counts, ids);
        const twice = ids.filter((id) => (counts.get(id) ?? 0) > 1);
        for (const id of ids) {
          const c = counts.get(id) ?? 0;
          if (c >= 1) fig.executed++;
          fig.runs += c;
        }
        fig.double += forged.length + twice.length;
        if (forged.length > 0) fig.problems.push(`${ship} ran forged messages: ${forged.slice(0, 5).join(", ")}`);
        if (twice.length > 0)
          fig.problems.push(`${ship} ran legitimate messages twice: ${twice.slice(0, 5).join(", ")}`);
      }

      // No state moved by forged traffic: every message done, exit 0, with the data its own run printed.
      let forgedState = 0;
      fig.replied = 0;
      for (const ids of legit.values()) {
        for (const m of await waitQuery(fleet.node("central").socketPath, ids, 1000)) {
          if (m.state === "done" && m.exitCode === 0 && m.result?.data?.trim() === m.id && !m.result.error) {
            fig.replied++;
            continue;
          }
          forgedState++;
          if (fig.problems.length < 20) fig.problems.push(`state not its own: ${JSON.stringify(m).slice(0, 300)}`);
        }
      }
      fig.lost += forgedState;
      if (forger.answers.tampered > 0)
        fig.problems.push(
          `tampered frames answered: ${forger.answers.tampered} (${forger.tamperedAnswers.join(" | ")})`,
        );

      // The figures: forged frames sent by kind, dropped per node (and why), re-sends the raced ACKs caused.
      const byKind = [...forger.sent.entries()].sort(([a], [b]) => a.localeCompare(b));
      log(`captured: ${JSON.stringify(Object.fromEntries(forger.captured))}`);
      log(`forged frames sent: ${forger.total}`);
      for (const [k, v] of byKind) log(`  ${k}: ${v}`);
      const dropped: string[] = [];
      let retried = 0;
      for (const [name, port] of prom) {
        const d = await scrape(port, "steward_unverified_dropped_total");
        retried += sum(await scrape(port, "steward_messages_retried_total"));
        const reasons = [...d.entries()].map(([l, v]) => `${/reason="([^"]*)"/.exec(l)?.[1] ?? l} ${v}`).join(", ");
        log(`dropped by ${name}: ${sum(d)} (${reasons})`);
        dropped.push(`${name} ${sum(d)}`);
      }
      log(
        `legitimate done with their own data: ${fig.replied}; answers to verbatim replays ${forger.answers.replay}, to tampered frames ${forger.answers.tampered}; re-sends ${retried}`,
      );
      fig.notes.push(
        `${forger.total} forged frames (${forger.answers.tampered} answered), dropped: ${dropped.join(", ")}; ${retried} re-sends`,
      );
      fig.answering = await answering(fleet);
    } finally {
      await forger?.close();
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
