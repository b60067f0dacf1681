/**
 * 9. Slow and stuck methods: a command that never exits, one that prints
 * gigabytes, one that forks children and exits. methodTimeout ends the whole
 * process tree, the receiver's memory stays bounded (output is capped at
 * maxMessageSize), and a stream of ordinary messages keeps flowing meanwhile
 * (guarantee 7, isolation).
 */
import { Fleet, sleepUntil } from "../../src/harness/fleet.js";
import { cmd, processesWith, RunsLog } from "../../src/harness/runs.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, rssKiB, settle, since, Stream } from "../lib/tally.js";

/** The receiver's resident memory must stay under this while a command prints gigabytes. */
const RSS_BOUND_MIB = 300;

export const slowMethods: Scenario = {
  name: "slowMethods",
  title: "stuck, gigabyte-printing and forking commands",
  // messages: the ordinary stream; faults: how many of each bad command; outageS: the GiB printed each.
  short: { messages: 200, faults: 2, outageS: 1 },
  full: { messages: 2000, faults: 4, outageS: 4 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-slow", ["central", "ship1"], { maxMessageSize: 1024 * 1024 });
    const marker = `steward-chaos-${Date.now().toString(36)}`;
    try {
      const runs = new RunsLog(fleet, "slow");
      const bad = new RunsLog(fleet, "slow-bad");
      const ship1 = fleet.node("ship1");
      let maxRss = 0;
      const sampler = setInterval(() => {
        maxRss = Math.max(maxRss, rssKiB(ship1.pid) ?? 0);
      }, 50);
      const expectFailed = new Set<string>();
      const badMsgs = [];
      const p = { ACKTimeout: 5, retries: 50, replyACKTimeout: 5, replyRetries: 50 };
      for (let i = 0; i < size.faults; i++) {
        badMsgs.push(
          cmd("ship1", bad.args(`exec sleep 100000; : ${marker}`), { ...p, id: `stuck-${i}`, methodTimeout: 3 }),
        );
        badMsgs.push(
          cmd("ship1", bad.args(`head -c ${size.outageS}G /dev/zero; : ${marker}`), {
            ...p,
            id: `loud-${i}`,
            methodTimeout: 120,
          }),
        );
        badMsgs.push(
          cmd("ship1", bad.args(`for k in 1 2 3; do (exec -a ${marker} sleep 100000) & done; exit 0`), {
            ...p,
            id: `forker-${i}`,
            methodTimeout: 5,
          }),
        );
        expectFailed.add(`stuck-${i}`);
      }
      fig.faults = badMsgs.length;
      const badIds = await fleet.sendOk("central", badMsgs);
      const stream = new Stream({
        fleet,
        from: "central",
        toNode: "ship1",
        runs,
        prefix: "sl",
        total: size.messages,
        window: 50,
      }).start();
      await stream.finished();
      const views = await settle(fig, fleet, "central", stream.ids, runs);
      log(`${stream.ids.length} ordinary messages done while the bad ones ran`);
      const badViews = await settle(fig, fleet, "central", badIds, bad, { expectFailed, timeoutMs: 300_000 });
      clearInterval(sampler);
      for (const id of badIds) {
        const v = badViews.get(id);
        if (id.startsWith("loud") && !(v?.state === "done" && (v.result?.truncated ?? 0) >= 0))
          fig.problems.push(`loud: ${JSON.stringify(v)}`);
      }
      let left: number[] = [];
      await sleepUntil(
        () => {
          left = processesWith(marker);
          return left.length === 0;
        },
        { timeoutMs: 15_000 },
      ).catch(() => undefined);
      if (left.length > 0) {
        fig.problems.push(`${left.length} processes outlived their message (pids ${left.join(", ")})`);
        fig.lost += left.length;
      }
      if (maxRss / 1024 > RSS_BOUND_MIB) {
        fig.problems.push(`receiver RSS ${Math.round(maxRss / 1024)} MiB > ${RSS_BOUND_MIB} MiB`);
        fig.lost++;
      }
      fig.notes.push(
        `${size.faults}× each of: never exits, prints ${size.outageS} GiB, forks 3 and exits; receiver max RSS ${Math.round(maxRss / 1024)} MiB (bound ${RSS_BOUND_MIB}); ${left.length} processes left`,
      );
      void views;
      fig.answering = await answering(fleet);
    } finally {
      for (const pid of processesWith(marker)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone.
        }
      }
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
