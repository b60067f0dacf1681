/**
 * 7. Bad input on every input the node has — its socket, its read folder and
 * the broker subjects it serves — interleaved with valid messages: malformed
 * JSON and YAML, wrong types, huge payloads, unknown methods and nodes, path
 * traversal in directory/fileName, thousands of messages in one batch. The
 * node stays up, answers each bad message with an error (at input, or as a
 * failed state with a reason), writes nothing outside its data folder, and
 * every valid message completes. On the broker, garbage that is not signed
 * by an admitted key gets no answer at all; garbage signed with central's
 * key (as an operator with central's key could send it) is refused with a reason.
 */
import { connect } from "@nats-io/transport-node";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { submit } from "../../src/client/client.js";
import { methodSubject, stateSubject } from "../../src/delivery/subjects.js";
import { Fleet, sleepUntil } from "../../src/harness/fleet.js";
import { RunsLog, statesOf } from "../../src/harness/runs.js";
import { readHeader, seal } from "../../src/security/frame.js";
import { loadOrCreateIdentity } from "../../src/security/identity.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, settle, since } from "../lib/tally.js";

/** The nodes' maxMessageSize: documents past it are refused; data past the broker's 1 MiB max_payload travels in chunks. */
const MAX = 4 * 1024 * 1024;

/** Documents that must each be refused at input, with at least one error line. */
function garbage(escapeTarget: string): string[] {
  const ok = { toNode: "ship1", method: "cliCommand", methodArgs: ["true"] };
  const j = (v: unknown) => JSON.stringify(v);
  return [
    "{not json",
    '[{"toNode": "ship1",, }]',
    "[".repeat(100_000),
    `${"[".repeat(5000)}${"]".repeat(5000)}`,
    "toNode: [unclosed\nmethod: {",
    "- : -\n  ? ! &a *b",
    "a: &x [*x, *x]\nb: *x",
    "\u0000\u0001\u0002\uFFFF",
    "null",
    "42",
    '"a string"',
    "{}",
    j({ ...ok, toNode: 5 }),
    j({ ...ok, toNode: "ship.1" }),
    j({ ...ok, toNode: "ship1 >" }),
    j({ ...ok, toNode: "" }),
    j({ ...ok, method: "rmRf" }),
    j({ ...ok, method: ["cliCommand"] }),
    j({ ...ok, methodArgs: "true" }),
    j({ ...ok, methodArgs: [{ a: 1 }] }),
    j({ ...ok, ACKTimeout: -5 }),
    j({ ...ok, ACKTimeout: 1e12 }),
    j({ ...ok, retries: "3" }),
    j({ ...ok, methodTimeout: 1.5 }),
    j({ ...ok, schedule: "often" }),
    j({ ...ok, id: "../../etc/passwd" }),
    j({ ...ok, id: "x".repeat(500) }),
    j({ ...ok, unknownField: true }),
    j({ ...ok, __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } }),
    j({ ...ok, data: 5 }),
    j({ ...ok, replyMethod: "nope" }),
    j([
      { ...ok, toNode: 1 },
      { ...ok, method: 2 },
    ]),
    `${"x".repeat(MAX + 10)}`,
    j({ ...ok, directory: escapeTarget, method: "file", fileName: 7 }),
  ];
}

export const fuzz: Scenario = {
  name: "fuzz",
  title: "malformed, hostile and huge input on socket, read folder and wire",
  short: { messages: 1000, faults: 1, outageS: 0 },
  full: { messages: 5000, faults: 3, outageS: 0 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const settings = { maxMessageSize: MAX };
    const fleet = await Fleet.start("chaos-fuzz", ["central", "ship1"], settings);
    try {
      const runs = new RunsLog(fleet, "fuzz");
      const central = fleet.node("central");
      const escapeTarget = join(fleet.dir, "escaped");
      const valid: string[] = [];
      const mayFail: string[] = [];
      let badAtInput = 0;
      let unanswered = 0;
      const miss = (what: string) => {
        unanswered++;
        if (fig.problems.length < 20) fig.problems.push(`no error answer for ${what.slice(0, 200)}`);
      };
      let n = 0;
      const good = () => ({
        id: `fz-${n++}`,
        toNode: "ship1",
        method: "cliCommand",
        methodArgs: runs.args(),
        replyMethod: "none",
        ACKTimeout: 5,
        retries: 50,
      });

      for (let round = 0; round < size.faults; round++) {
        fig.faults++;
        // a) Socket: every garbage document alone, each followed by a valid one.
        for (const doc of garbage(escapeTarget)) {
          const bad = await submit(central.socketPath, doc).catch(() => []);
          if (bad.length === 0 || bad.some((a) => a.ok))
            miss(`socket document ${doc.slice(0, 60)}: ${JSON.stringify(bad).slice(0, 100)}`);
          else badAtInput++;
          for (const a of await submit(central.socketPath, JSON.stringify(good()))) if (a.ok) valid.push(a.id);
        }
        // b) Accepted at input, refused later with a reason: the method or the receiver says no.
        const later = [
          { toNode: "ghost", method: "ping", ACKTimeout: 1, retries: 0 },
          {
            toNode: "ship1",
            method: "file",
            directory: "../../..",
            fileName: "x",
            data: "x",
            ACKTimeout: 5,
            retries: 2,
          },
          {
            toNode: "ship1",
            method: "file",
            directory: escapeTarget,
            fileName: "x",
            data: "x",
            ACKTimeout: 5,
            retries: 2,
          },
          { toNode: "ship1", method: "file", directory: "d", fileName: "..", data: "x", ACKTimeout: 5, retries: 2 },
          {
            toNode: "ship1",
            method: "cliCommand",
            methodArgs: ["true"],
            directory: "../../..",
            fileName: "esc",
            ACKTimeout: 5,
            retries: 2,
          },
          { toNode: "ship1", method: "cliCommand", methodArgs: ["/no/such/command"], ACKTimeout: 5, retries: 2 },
        ];
        for (const m of later) {
          const [a] = await submit(central.socketPath, JSON.stringify(m));
          // Either answer is an error: refused at input (path checks are there), or failed later with a reason.
          if (a?.ok) mayFail.push(a.id);
          else if (a) badAtInput++;
          else miss(`socket message ${JSON.stringify(m).slice(0, 80)}`);
        }
        // Huge but within maxMessageSize: more than the broker's max_payload, so it travels in chunks, and completes.
        const huge = {
          toNode: "ship1",
          method: "console",
          data: "y".repeat(2 * 1024 * 1024),
          ACKTimeout: 5,
          retries: 2,
        };
        for (const a of await submit(central.socketPath, JSON.stringify(huge)))
          if (a.ok) valid.push(a.id);
          else miss(`a message of 2 MiB (within maxMessageSize) was refused: ${a.error}`);
        // c) One batch of thousands, every other entry broken.
        const batch = Array.from({ length: size.messages }, (_, i) =>
          i % 2 === 0
            ? { id: `fzb-${round}-${i}`, toNode: "ship1", method: "ping", ACKTimeout: 5, retries: 50 }
            : { toNode: i },
        );
        const answers = await submit(central.socketPath, JSON.stringify(batch));
        for (const a of answers) {
          if (a.ok) valid.push(a.id);
          else badAtInput++;
        }
        if (answers.length !== size.messages) miss(`batch of ${size.messages}: ${answers.length} answers`);
        // d) Read folder: a bad file and a good one.
        writeFileSync(join(central.readFolder, `bad-${round}.json`), "[{broken");
        const rf = good();
        writeFileSync(join(central.readFolder, `good-${round}.json`), JSON.stringify(rf));
        valid.push(rf.id);
        // e) The wire: garbage straight onto ship1's and central's subjects. Unsigned, it gets no answer at all
        // (dropped and counted); signed with central's key, a JSON one is refused with a reason. Never run.
        const nc = await connect({ servers: fleet.broker.url });
        const centralKey = loadOrCreateIdentity(join(central.opts.dir, "etc"), "central").identity;
        const signed = (subject: string, text: string) => seal(centralKey, subject, new TextEncoder().encode(text));
        const noAnswer = async (subject: string, bytes: Uint8Array) => {
          const r = await nc.request(subject, bytes, { timeout: 300 }).catch(() => undefined);
          if (r) miss(`wire ${subject}: unsigned garbage was answered: ${new TextDecoder().decode(r.data)}`);
        };
        const wire = [
          "",
          "{",
          "null",
          "[]",
          '{"id":"w1"}',
          JSON.stringify({ ...good(), id: "w2", fromNode: "central" }).slice(0, 30),
        ];
        const forged = {
          ...good(),
          id: "w3",
          fromNode: "mallory",
          toNode: "ship1",
          methodArgs: runs.args(),
          attempt: 1,
          methodTimeout: 5,
        };
        // Each on the subject that names central as its sender, as central's key signs them.
        const notices = stateSubject("ship1", "central");
        const subjects = [
          methodSubject("ship1", "cliCommand", "central"),
          methodSubject("ship1", "file", "central"),
          methodSubject("central", "pong", "central"),
          methodSubject("central", "errorLog", "central"),
          notices,
        ];
        for (const subject of subjects) {
          for (const w of wire) {
            await noAnswer(subject, new TextEncoder().encode(w));
            // Signed: JSON that is no message is refused; what is not JSON at all is dropped like a forgery.
            const r = await nc.request(subject, signed(subject, w), { timeout: 2000 }).catch(() => undefined);
            const answer = r ? new TextDecoder().decode(readHeader(r.data)?.body ?? r.data) : "";
            const isJson = ["null", "[]", '{"id":"w1"}'].includes(w);
            // _state takes notices without answering; a method subject answers signed JSON garbage.
            if (subject !== notices && isJson && !answer.includes("refused"))
              miss(`wire ${subject} ${w}: ${answer || "no answer"}`);
          }
        }
        // A well-formed message whose method is sent on another method's subject, and forged path traversal.
        const traversal = [
          { ...forged, id: "w4", method: "file", directory: "../../..", fileName: "x", data: "x" },
          { ...forged, id: "w5", method: "file", directory: escapeTarget, fileName: "x", data: "x" },
          { ...forged, id: "w6", method: "file", directory: "d", fileName: "../../x", data: "x" },
        ];
        for (const m of [forged, ...traversal]) {
          // Unsigned, as "mallory": no answer, nothing written.
          await noAnswer(methodSubject("ship1", "file", "mallory"), new TextEncoder().encode(JSON.stringify(m)));
          // Signed with central's key: refused (the path checks of input run on the wire too), never written.
          const asCentral = { ...m, fromNode: "central", deliverBy: Date.now() + 60_000 };
          const subject = methodSubject("ship1", "file", "central");
          const r = await nc.request(subject, signed(subject, JSON.stringify(asCentral)), { timeout: 15_000 });
          const answer = new TextDecoder().decode(readHeader(r.data)?.body ?? r.data);
          // The file method may take the message (ACK) and fail it with a reason; it must never write outside.
          if (!answer.includes("refused") && !answer.includes('"ack"')) miss(`forged ${m.id}: ${answer}`);
        }
        await nc.close();
        log(
          `round ${round + 1}: ${valid.length} valid accepted, ${badAtInput} refused at input, ${unanswered} bad without an error`,
        );
      }

      await sleepUntil(() => readdirSync(central.readFolder).filter((f) => f.endsWith(".json")).length === 0, {
        timeoutMs: 30_000,
        what: "the read folder to take its files",
      });
      const failedDir = join(central.readFolder, "failed");
      const errorFiles = existsSync(failedDir) ? readdirSync(failedDir).filter((f) => f.endsWith(".error")) : [];
      if (errorFiles.length !== size.faults)
        miss(`read folder: ${errorFiles.length} error files for ${size.faults} bad files`);
      for (const f of errorFiles)
        if (!readFileSync(join(failedDir, f), "utf8").startsWith("error")) miss(`read folder error file ${f}`);

      // Valid ones all complete; the cliCommand ones ran once each.
      const views = await settle(fig, fleet, "central", valid, undefined);
      const counts = runs.counts();
      for (const id of valid.filter((i) => i.startsWith("fz-"))) {
        const c = counts.get(id) ?? 0;
        fig.executed += c >= 1 ? 1 : 0;
        fig.runs += c;
        if (c > 1) fig.double++;
      }
      if (counts.has("w3")) fig.problems.push("a forged message on the wrong subject ran");
      fig.replied = [...views.values()].filter((v) => v.state === "done").length;
      // Refused later: each must be failed with a reason, none done.
      const later = await statesOf(fleet, "central", mayFail);
      for (const id of mayFail) {
        const v = later.get(id);
        if (!(v?.state === "failed" && v.reason)) {
          await sleepUntil(async () => (await statesOf(fleet, "central", [id])).get(id)?.state === "failed", {
            timeoutMs: 30_000,
          }).catch(() => undefined);
          const again = (await statesOf(fleet, "central", [id])).get(id);
          if (!(again?.state === "failed" && again.reason))
            miss(`accepted bad message, not failed: ${JSON.stringify(again)}`);
        }
      }
      for (const outside of [escapeTarget, join(fleet.dir, "..", "mallory"), join(fleet.dir, "ship1", "mallory")]) {
        if (existsSync(outside)) fig.problems.push(`something was written outside the data folder: ${outside}`);
      }
      fig.lost += fig.problems.filter((p) => p.startsWith("something was written")).length;
      fig.notes.push(
        `${badAtInput} refused at input, ${mayFail.length} failed later with a reason, ${unanswered} unanswered`,
      );
      fig.lost += unanswered;
      fig.answering = (await answering(fleet)) && fleet.node("central").running && fleet.node("ship1").running;
    } finally {
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
