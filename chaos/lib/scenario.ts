/**
 * What a chaos scenario is: a name, the guarantee it attacks, a short size
 * (CI, a few seconds) and a full size (`npm run chaos`), and a run that
 * returns the figures. Every scenario starts its own brokers and nodes on
 * 127.0.0.1 and stops them all, whatever happens.
 */
import type { Figures } from "./tally.js";

/** How big a run is. Scenarios read the fields they need. */
export interface Size {
  /** Messages to send. */
  messages: number;
  /** Faults to inject (kills, cuts). */
  faults: number;
  /** How long an outage lasts, in seconds. */
  outageS: number;
}

export interface Scenario {
  /** Short id, e.g. "brokerKill". */
  name: string;
  /** One line: the fault and what must hold. */
  title: string;
  short: Size;
  full: Size;
  run(size: Size, log: (line: string) => void): Promise<Figures>;
}
