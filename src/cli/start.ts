/** `steward start [flags]`: run a node until SIGINT/SIGTERM. */
import { loadConfig, parseSettingFlags, settingsHelp } from "../node/config.js";
import { StewardNode } from "../node/node.js";
import { makeFilesPrivate } from "../umask.js";
import { UsageError } from "./args.js";

export const START_HELP = `Usage: steward start [flags]     (plain "steward [flags]" does the same)

Runs a Steward node: connects outbound to the broker, takes messages from its
socket and read folder, delivers them, runs the methods sent to it.

Every setting is a flag (--node-name=ship1; the seeds' --nodeName=ship1 works
too), an environment variable (NODE_NAME) and a key in
<CONFIG_FOLDER>/config.json. Precedence: flag > env > config file > default.
config.json is created with the defaults on first start; values given by
flag are written back to it; delete it to return to the defaults.

Settings:
${settingsHelp()}
`;

export async function startCommand(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(START_HELP);
    return 0;
  }
  const { values, rest } = parseSettingFlags(args);
  if (rest.length > 0) throw new UsageError(`unknown argument ${rest[0]}; see "steward start --help" for the settings`);
  // config.json, written below, is the node's user's alone, like everything the node writes.
  makeFilesPrivate();
  const config = loadConfig(values, { persist: true });
  const node = await StewardNode.start(config);
  await new Promise<void>((resolve) => {
    // A second signal finds no handler and ends the process at once, as a crash would (its runs are re-run).
    const stop = (signal: string) => {
      node.log.info("stopping", { signal, stopGracePeriod: node.config.stopGracePeriod });
      resolve();
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
  await node.close();
  // Whatever a stuck method still holds open, the process ends.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
