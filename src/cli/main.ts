#!/usr/bin/env node
/** The `steward` executable. */
import { UsageError } from "./args.js";

// Each command is imported only when it runs. Client commands (send, status, nodes)
// then no longer load the whole node (nats.js, SQLite, every method): about 80 ms and
// 12 MB less per `steward send`; and `steward start` skips the demo's broker launcher,
// the CLI client and the formatting code.
const start = async (args: string[]) => (await import("./start.js")).startCommand(args);

const HELP = `Steward: command & control for fleets of always- or sometimes-online machines.

Usage: steward <command> [flags]

Commands:
  start     run a node (plain "steward [flags]" does the same)
  send      hand messages to the local node; --wait prints the results
  status    message states, or one message in full: steward status [ID]
  cancel    withdraw messages: steward cancel ID..., or by --to, --state, --method
  copy      copy a file between nodes: steward copy [NODE:]PATH NODE:PATH
  nodes     known nodes: last seen, pending messages
  keys      on central: list, approve and revoke node keys
  acl       on central: show and set who may call what on which nodes
  broker-config  a nats-server configuration with one credential per node, least privilege
  demo      a broker, a central and two nodes on this machine, end to end

"steward <command> --help" tells more.
`;

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  switch (first) {
    case "start":
      return start(rest);
    case "send":
      return (await import("./send.js")).sendCommand(rest);
    case "status":
      return (await import("./status.js")).statusCommand(rest);
    case "cancel":
      return (await import("./cancel.js")).cancelCommand(rest);
    case "copy":
      return (await import("./copy.js")).copyCommand(rest);
    case "nodes":
      return (await import("./status.js")).nodesCommand(rest);
    case "keys":
      return (await import("./keys.js")).keysCommand(rest);
    case "acl":
      return (await import("./keys.js")).aclCommand(rest);
    case "broker-config":
      return (await import("./brokerConfig.js")).brokerConfigCommand(rest);
    case "demo":
      return (await import("./demo.js")).demoCommand(rest);
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return 0;
    case undefined:
      return start([]);
    default:
      if (first.startsWith("-")) return start(argv);
      throw new UsageError(`unknown command "${first}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Messages, not stack traces: STEWARD_DEBUG=1 shows where an unexpected error came from.
    const text =
      err instanceof Error ? (process.env.STEWARD_DEBUG ? (err.stack ?? err.message) : err.message) : String(err);
    process.stderr.write(`steward: ${text}\n`);
    if (err instanceof UsageError) process.stderr.write(`Run "steward --help" for usage.\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
