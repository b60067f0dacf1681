/**
 * 11. Garbage at the TCP and HTTP listeners, with and without the token:
 * random bytes and lines, valid messages without the token or with a wrong
 * one, documents past maxInputBytes, headers and bodies of every kind, and
 * connections that trickle a byte at a time or never say anything, past the
 * connection cap — while valid messages go in over the socket, TCP and HTTP.
 * What must hold: the node stays up, every valid message is done (one refused
 * as "busy" is simply handed in again), nothing sent without the right token
 * is stored, and the connections that never finish are closed by the node.
 */
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { createConnection, type Socket } from "node:net";
import { listenerToken, messageStatus, submit, submitHttp, submitTcp } from "../../src/client/client.js";
import { NodeQueryError } from "../../src/errors.js";
import { Fleet, sleepUntil } from "../../src/harness/fleet.js";
import { freePort, tcpExchange } from "../../src/harness/net.js";
import type { Scenario } from "../lib/scenario.js";
import { answering, emptyFigures, settle, since, sleep } from "../lib/tally.js";

const MAX_BYTES = 64 * 1024;
const MAX_CONNECTIONS = 16;

/** One HTTP request as given; the status, or 0 when the node closed the connection without one. */
function httpRaw(
  port: number,
  method: string,
  headers: Record<string, string>,
  body: string | Buffer,
): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, method, path: "/messages", headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end(body);
  });
}

/** A connection that sends one byte every `ms` and never finishes; resolves once the node closes it. */
function trickle(port: number, text: string, ms: number): { socket: Socket; closed: Promise<void> } {
  const socket = createConnection(port, "127.0.0.1");
  let i = 0;
  const timer = setInterval(() => {
    if (socket.writable) socket.write(text.charAt(i++ % text.length));
  }, ms);
  // Read what the node answers, so that its closing is seen.
  socket.resume();
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.on("close", () => {
      clearInterval(timer);
      resolve();
    }),
  );
  return { socket, closed };
}

/** Retry a submission the node refused as busy (the connection cap): a busy refusal stores nothing. */
async function untilTaken(
  send: () => Promise<{ ok: boolean; id?: string; error?: string }[]>,
): Promise<string | undefined> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    const answers = await send().catch((err: unknown) => [{ ok: false, id: undefined, error: String(err) }]);
    const a = answers[0];
    if (a?.ok) return a.id;
    if (!/busy|503|ECONNRESET|no results/.test(a?.error ?? "")) return undefined;
    await sleep(100);
  }
  return undefined;
}

export const listenerFuzz: Scenario = {
  name: "listenerFuzz",
  title: "garbage, no token, oversized and never-finishing connections at the TCP and HTTP listeners",
  // messages: valid ones per input per round; faults: rounds of garbage.
  short: { messages: 5, faults: 2, outageS: 0 },
  full: { messages: 50, faults: 10, outageS: 0 },
  async run(size, log) {
    const fig = emptyFigures(this.name);
    const t0 = Date.now();
    const fleet = await Fleet.start("chaos-listenerFuzz", ["ship1"]);
    const slow: { socket: Socket; closed: Promise<void> }[] = [];
    try {
      const tcpPort = await freePort();
      const httpPort = await freePort();
      await fleet.add("central", {
        tcpListener: `127.0.0.1:${tcpPort}`,
        httpListener: `127.0.0.1:${httpPort}`,
        maxInputBytes: MAX_BYTES,
        maxInputConnections: MAX_CONNECTIONS,
      });
      const central = fleet.node("central");
      const token = listenerToken(central.configFolder);
      const tcp = `127.0.0.1:${tcpPort}`;
      const http = `127.0.0.1:${httpPort}`;
      const forbidden: string[] = [];
      const valid: string[] = [];
      let n = 0;
      const message = (prefix: string) => {
        const id = `${prefix}-${n++}`;
        (prefix === "lf" ? valid : forbidden).push(id);
        return JSON.stringify({ id, toNode: "ship1", method: "cliCommand", methodArgs: ["echo", id] });
      };
      const host = { host: `127.0.0.1:${httpPort}` };
      const json = { "content-type": "application/json" };

      for (let round = 0; round < size.faults; round++) {
        fig.faults++;
        // Connections that never finish, more than the cap: tokenless silent ones, byte-at-a-time ones.
        for (let i = 0; i < MAX_CONNECTIONS / 2; i++) {
          slow.push(trickle(tcpPort, `TOKEN ${token}\n${message("lf-slow")}`.slice(0, 20), 300));
          slow.push(trickle(httpPort, `POST /messages HTTP/1.1\r\nHost: ${http}\r\n`, 300));
          slow.push(trickle(tcpPort, "", 60_000));
        }
        const garbage: Promise<unknown>[] = [];
        // TCP: no token, a wrong one, random bytes, and too much with and without the token.
        garbage.push(tcpExchange(tcpPort, message("forbidden")));
        garbage.push(tcpExchange(tcpPort, `TOKEN ${randomBytes(32).toString("base64url")}\n${message("forbidden")}`));
        garbage.push(tcpExchange(tcpPort, `TOKEN ${token.slice(0, -1)}\n${message("forbidden")}`));
        garbage.push(tcpExchange(tcpPort, randomBytes(2048)));
        garbage.push(tcpExchange(tcpPort, `TOKEN\n${message("forbidden")}`));
        garbage.push(tcpExchange(tcpPort, `${"x".repeat(MAX_BYTES * 2)}`));
        garbage.push(tcpExchange(tcpPort, `TOKEN ${token}\n[${"1,".repeat(MAX_BYTES)}1]`));
        garbage.push(tcpExchange(tcpPort, `TOKEN ${token}\n${randomBytes(1024).toString("latin1")}`));
        // HTTP: no token, wrong token, wrong types, foreign origin and host, bytes, too much.
        const bad = { authorization: `Bearer ${randomBytes(32).toString("base64url")}` };
        const good = { authorization: `Bearer ${token}` };
        garbage.push(httpRaw(httpPort, "POST", { ...host, ...json }, message("forbidden")));
        garbage.push(httpRaw(httpPort, "POST", { ...host, ...json, ...bad }, message("forbidden")));
        garbage.push(
          httpRaw(httpPort, "POST", { ...host, ...good, "content-type": "text/plain" }, message("forbidden")),
        );
        garbage.push(
          httpRaw(httpPort, "POST", { ...host, ...good, ...json, origin: "http://evil.example" }, message("forbidden")),
        );
        garbage.push(
          httpRaw(httpPort, "POST", { ...good, ...json, host: `evil.example:${httpPort}` }, message("forbidden")),
        );
        garbage.push(httpRaw(httpPort, "POST", { ...host, ...good, ...json }, randomBytes(2048)));
        garbage.push(httpRaw(httpPort, "POST", { ...host, ...good, ...json }, "x".repeat(MAX_BYTES * 2)));
        garbage.push(httpRaw(httpPort, "PUT", { ...host, ...good, ...json }, message("forbidden")));
        garbage.push(tcpExchange(httpPort, randomBytes(4096)));
        garbage.push(tcpExchange(httpPort, `GET / HTTP/1.1\r\n${"X-A: b\r\n".repeat(5000)}\r\n`));
        // Meanwhile valid messages over the socket, TCP and HTTP.
        const taken: Promise<string | undefined>[] = [];
        for (let i = 0; i < size.messages; i++) {
          taken.push(untilTaken(() => submit(central.socketPath, message("lf"))));
          const overTcp = message("lf");
          taken.push(untilTaken(() => submitTcp(tcp, token, overTcp)));
          const overHttp = message("lf");
          taken.push(untilTaken(() => submitHttp(http, token, overHttp)));
        }
        await Promise.all(garbage);
        const ids = await Promise.all(taken);
        const missing = ids.filter((id) => id === undefined).length;
        if (missing > 0) fig.problems.push(`round ${round + 1}: ${missing} valid messages were never taken`);
        log(`round ${round + 1}: ${garbage.length} garbage requests, ${ids.length - missing} valid taken`);
      }

      const views = await settle(fig, fleet, "central", valid, undefined);
      fig.replied = [...views.values()].filter((v) => v.state === "done").length;
      fig.executed = fig.replied;
      fig.runs = fig.replied;
      // Nothing sent without the right token, or refused, was stored.
      for (const id of forbidden) {
        const held = await messageStatus(central.socketPath, id).then(
          () => true,
          (err: unknown) => {
            if (err instanceof NodeQueryError) return false;
            throw err;
          },
        );
        if (held) {
          fig.problems.push(`stored without the right token: ${id}`);
          fig.lost++;
        }
      }
      // The connections that never finish are closed by the node (token line within 10 s, headers within 10 s).
      let open = slow.length;
      for (const s of slow) void s.closed.then(() => open--);
      await sleepUntil(() => open === 0, {
        timeoutMs: 30_000,
        what: "the node to close every never-finishing connection",
      }).catch(() => fig.problems.push(`${open} never-finishing connections still open after 30 s`));
      fig.notes.push(`${forbidden.length} refused documents, ${slow.length} never-finishing connections`);
      fig.answering = (await answering(fleet)) && central.running;
    } finally {
      for (const s of slow) s.socket.destroy();
      await fleet.close();
    }
    fig.seconds = since(t0);
    return fig;
  },
};
