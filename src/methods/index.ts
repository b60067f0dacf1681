/**
 * The method table: canonical name → handler. One file per method beside this
 * one; what the layers below know of a method (names, flags, the check of its
 * arguments) is its entry in src/message/methods.ts. Each method's code is
 * loaded on its first run: a node loads the methods it runs, not all of them
 * (resident memory and start time).
 */
import { MethodError } from "../errors.js";
import { argsProblem, METHOD_NAMES, type MethodName } from "../message/methods.js";
import type { MethodHandler } from "./method.js";

/** One line per method: a missing one does not compile. */
const LOADERS: Record<MethodName, () => Promise<MethodHandler>> = {
  cliCommand: async () => (await import("./cliCommand.js")).cliCommand,
  cliCommandCont: async () => (await import("./cliCommandCont.js")).cliCommandCont,
  tailFile: async () => (await import("./tailFile.js")).tailFile,
  httpGet: async () => (await import("./httpGet.js")).httpGet,
  console: async () => (await import("./console.js")).consoleMethod,
  file: async () => (await import("./file.js")).file,
  fileAppend: async () => (await import("./fileAppend.js")).fileAppend,
  none: async () => (await import("./none.js")).none,
  ping: async () => (await import("./ping.js")).ping,
  pong: async () => (await import("./pong.js")).pong,
  hello: async () => (await import("./hello.js")).hello,
  errorLog: async () => (await import("./errorLog.js")).errorLog,
  cancel: async () => (await import("./cancel.js")).cancel,
  portDst: async () => (await import("./portDst.js")).portDst,
  portSrc: async () => (await import("./portSrc.js")).portSrc,
  copySrc: async () => (await import("./copySrc.js")).copySrc,
  copyDst: async () => (await import("./copyDst.js")).copyDst,
  opProcessList: async () => (await import("./opProcessList.js")).opProcessList,
  opProcessStart: async () => (await import("./opProcessStart.js")).opProcessStart,
  opProcessStop: async () => (await import("./opProcessStop.js")).opProcessStop,
};

/**
 * A handler that loads its method on the first call. A request's arguments
 * are checked when a message is accepted (message/parse.ts); one from another
 * node arrives without that, so the same check runs here before the method.
 */
function lazy(method: MethodName): MethodHandler {
  let handler: Promise<MethodHandler> | undefined;
  return async (ctx) => {
    const problem = ctx.message.requestId === undefined ? argsProblem(method, ctx.message) : undefined;
    // The reason names the method first ("httpGet needs …"), as MethodError does too: said once.
    if (problem) throw new MethodError(method, problem.reason.replace(new RegExp(`^${method} `), ""));
    return (await (handler ??= LOADERS[method]()))(ctx);
  };
}

export const METHODS = Object.fromEntries(METHOD_NAMES.map((method) => [method, lazy(method)])) as Record<
  MethodName,
  MethodHandler
>;
