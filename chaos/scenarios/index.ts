/** Every chaos scenario, in the order docs/RELIABILITY.md reports them. */
import type { Scenario } from "../lib/scenario.js";
import { brokerKill } from "./brokerKill.js";
import { clusterFailover } from "./clusterFailover.js";
import { diskTrouble } from "./diskTrouble.js";
import { forge } from "./forge.js";
import { fuzz } from "./fuzz.js";
import { leafCut } from "./leafCut.js";
import { listenerFuzz } from "./listenerFuzz.js";
import { receiverKill } from "./receiverKill.js";
import { senderKill } from "./senderKill.js";
import { slowMethods } from "./slowMethods.js";
import { targetOffline } from "./targetOffline.js";

export const SCENARIOS: Scenario[] = [
  brokerKill,
  receiverKill,
  senderKill,
  targetOffline,
  clusterFailover,
  leafCut,
  fuzz,
  diskTrouble,
  slowMethods,
  forge,
  listenerFuzz,
];
