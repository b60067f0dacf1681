/**
 * The method table: canonical name → handler. One file per method beside this one.
 * Each method's code is loaded on its first run: a node loads the methods it
 * runs, not all fifteen (resident memory and start time, issue #5).
 */
import type { MethodName } from "../message/methods.js";
import type { MethodHandler } from "./method.js";

function lazy(load: () => Promise<MethodHandler>): MethodHandler {
  let handler: Promise<MethodHandler> | undefined;
  return async (ctx) => (await (handler ??= load()))(ctx);
}

export const METHODS: Record<MethodName, MethodHandler> = {
  cliCommand: lazy(async () => (await import("./cliCommand.js")).cliCommand),
  cliCommandCont: lazy(async () => (await import("./cliCommandCont.js")).cliCommandCont),
  tailFile: lazy(async () => (await import("./tailFile.js")).tailFile),
  httpGet: lazy(async () => (await import("./httpGet.js")).httpGet),
  console: lazy(async () => (await import("./console.js")).consoleMethod),
  file: lazy(async () => (await import("./file.js")).file),
  fileAppend: lazy(async () => (await import("./fileAppend.js")).fileAppend),
  none: lazy(async () => (await import("./none.js")).none),
  ping: lazy(async () => (await import("./ping.js")).ping),
  pong: lazy(async () => (await import("./pong.js")).pong),
  hello: lazy(async () => (await import("./hello.js")).hello),
  errorLog: lazy(async () => (await import("./errorLog.js")).errorLog),
  opProcessList: lazy(async () => (await import("./opProcessList.js")).opProcessList),
  opProcessStart: lazy(async () => (await import("./opProcessStart.js")).opProcessStart),
  opProcessStop: lazy(async () => (await import("./opProcessStop.js")).opProcessStop),
};
