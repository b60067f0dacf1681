/** The method table: canonical name → handler. One file per method beside this one. */
import type { MethodName } from "../message/methods.js";
import { cliCommand } from "./cliCommand.js";
import { cliCommandCont } from "./cliCommandCont.js";
import { consoleMethod } from "./console.js";
import { errorLog } from "./errorLog.js";
import { file } from "./file.js";
import { fileAppend } from "./fileAppend.js";
import { hello } from "./hello.js";
import { httpGet } from "./httpGet.js";
import type { MethodHandler } from "./method.js";
import { none } from "./none.js";
import { opProcessList } from "./opProcessList.js";
import { opProcessStart } from "./opProcessStart.js";
import { opProcessStop } from "./opProcessStop.js";
import { ping } from "./ping.js";
import { pong } from "./pong.js";
import { tailFile } from "./tailFile.js";

export const METHODS: Record<MethodName, MethodHandler> = {
  cliCommand,
  cliCommandCont,
  tailFile,
  httpGet,
  console: consoleMethod,
  file,
  fileAppend,
  none,
  ping,
  pong,
  hello,
  errorLog,
  opProcessList,
  opProcessStart,
  opProcessStop,
};
