/**
 * Steward's public surface for programs: run a node, talk to one, parse
 * messages. Values first, then types; nothing else is public.
 */
export {
  findMessages,
  health,
  listMessages,
  listNodes,
  messageStatus,
  submit,
  waitForFinal,
  watchMessages,
} from "./client/client.js";
export {
  ConfigError,
  MessageInputError,
  MethodError,
  NodeQueryError,
  NodeUnreachableError,
  StoreError,
} from "./errors.js";
export { FINAL_STATES, isFinal } from "./message/message.js";
export { METHOD_NAMES, canonicalMethod } from "./message/methods.js";
export { parseMessages } from "./message/parse.js";
export { SETTINGS, loadConfig, parseSettingFlags } from "./node/config.js";
export { StewardNode } from "./node/node.js";

export type { Health, MessageFilter, MessageList, MessageView, NodeView, WatchEvent } from "./client/client.js";
export type { AcceptAnswer } from "./inputs/protocol.js";
export type { Envelope, Message, MessageState, MethodResult } from "./message/message.js";
export type { MethodName } from "./message/methods.js";
export type { Config } from "./node/config.js";
