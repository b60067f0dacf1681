/**
 * The TCP listener (`tcpListener` host:port): after the token line, the
 * socket's protocol over TCP, one answer line per message, and what it accepts
 * is delivered; it serves no queries. (Refusals: test/localInputs.test.ts.)
 */
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { after, before, describe, test } from "node:test";
import { listenerToken, submitTcp } from "../src/client/client.js";
import { Fleet } from "../src/harness/fleet.js";
import { freePort } from "../src/harness/net.js";
import { parseAnswerLine } from "../src/inputs/protocol.js";

let fleet: Fleet;
let tcpPort: number;
let token: string;

function tcpSend(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(port, "127.0.0.1");
    let out = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.end(text));
    c.on("data", (d: string) => {
      out += d;
    });
    c.on("end", () => resolve(out));
    c.on("error", reject);
  });
}

before(async () => {
  fleet = await Fleet.start("tcpListener", ["ship1"]);
  tcpPort = await freePort();
  await fleet.add("central", { tcpListener: `127.0.0.1:${tcpPort}` });
  token = listenerToken(fleet.node("central").configFolder);
});
after(() => fleet.close());

describe("tcpListener", () => {
  test("answers one line per message and delivers the accepted ones", async () => {
    const doc = JSON.stringify([
      { toNode: "ship1", method: "cliCommand", methodArgs: ["echo", "over-tcp"] },
      { toNode: "ship1", method: "noSuchMethod" },
    ]);
    const lines = (await tcpSend(tcpPort, `TOKEN ${token}\n${doc}`)).trim().split("\n");
    assert.equal(lines.length, 2, lines.join("\n"));
    const [ok, bad] = lines.map(parseAnswerLine);
    assert.ok(ok?.ok, lines[0]);
    assert.ok(bad && !bad.ok && /message 1, field "method"/.test(bad.error), lines[1]);
    const m = await fleet.waitState("central", ok.ok ? ok.id : "");
    assert.equal(m.state, "done");
    assert.equal(m.result?.data, "over-tcp\n");
  });

  test("does not answer the CLI's status queries (those stay on the local socket)", async () => {
    const out = await tcpSend(tcpPort, `TOKEN ${token}\nSTEWARD/1 health\n`);
    assert.match(out, /^error /);
  });

  test("the client's submitTcp sends the token line and reads the answers", async () => {
    const [a] = await submitTcp(`127.0.0.1:${tcpPort}`, token, '{"toNode": "ship1", "method": "ping"}');
    assert.ok(a?.ok, JSON.stringify(a));
    assert.equal((await fleet.waitState("central", a.id)).state, "done");
  });
});
