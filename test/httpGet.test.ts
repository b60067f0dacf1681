/**
 * httpGet: ship1 fetches a URL from a real local web server and sends the
 * body back; failures (non-2xx, refused connection, methodTimeout) come back
 * with their reason, and a message without a URL is refused at input.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { Fleet } from "../src/harness/fleet.js";

let fleet: Fleet;
let web: Server;
let webPort = 0;

before(async () => {
  fleet = await Fleet.start("httpGet", ["central", "ship1"]);
  web = createServer((req, res) => {
    if (req.url === "/ok") res.end("<html>hello from the web</html>");
    else if (req.url === "/slow") setTimeout(() => res.end("late"), 10_000).unref();
    else {
      res.statusCode = 404;
      res.end("not here");
    }
  });
  await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
  const addr = web.address();
  webPort = typeof addr === "object" && addr ? addr.port : 0;
});
after(async () => {
  web.closeAllConnections();
  await new Promise((r) => web.close(r));
  await fleet.close();
});

describe("httpGet", () => {
  const get = async (url: string, extra: Record<string, unknown> = {}) => {
    const [id] = await fleet.sendOk("central", {
      toNode: "ship1",
      method: "REQHttpGet",
      methodArgs: [url],
      replyMethod: "none",
      ...extra,
    });
    return fleet.waitState("central", id as string);
  };

  test("brings the body back", async () => {
    const m = await get(`http://127.0.0.1:${webPort}/ok`);
    assert.equal(m.state, "done");
    assert.equal(m.result?.data, "<html>hello from the web</html>");
  });

  test("non-2xx, a refused connection and a timeout are errors with the reason", async () => {
    const notFound = await get(`http://127.0.0.1:${webPort}/missing`);
    assert.equal(notFound.state, "failed");
    assert.match(notFound.reason ?? "", /HTTP 404/);
    assert.equal(notFound.result?.data, "not here", "the body of an error answer comes back with the reason");
    // A port that was free a moment ago: nothing listens there.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const addr = closed.address();
    await new Promise((r) => closed.close(r));
    const refused = await get(`http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/`);
    assert.equal(refused.state, "failed");
    assert.match(refused.reason ?? "", /ECONNREFUSED/);
    const slow = await get(`http://127.0.0.1:${webPort}/slow`, { methodTimeout: 1 });
    assert.equal(slow.state, "failed");
    assert.match(slow.reason ?? "", /timed out/);
  });

  test("a message without a URL is refused at input", async () => {
    const [answer] = await fleet.send("central", { toNode: "ship1", method: "httpGet", methodArgs: ["not a url"] });
    assert.ok(answer && !answer.ok);
    assert.match(answer.error, /message 0, field "methodArgs"/);
  });
});
