/** `steward cancel ID…` or `steward cancel --to NODE --state queued,sent`: withdraw messages sent from the local node. */
import { userInfo } from "node:os";
import { cancelMessages } from "../client/client.js";
import { parseSettingFlags } from "../node/config.js";
import { clientSocket, takeFlag, takeOption, UsageError } from "./args.js";
import { takeStates } from "./messageFilter.js";

export const CANCEL_HELP = `Usage: steward cancel ID... [--json]
       steward cancel [--to NODE] [--state STATE,...] [--method METHOD] [--json]

Withdraw messages sent from the local node, in any state before a final one.
With IDs: those messages. With filters instead: every message not ended yet
that matches all of them, e.g. --to ship1 --state queued,sent.

  pending, queued,   withdrawn here: not sent (again). One that was sent may
  sent              have arrived with its ACK lost: a signed cancel follows it.
  acked, waiting,   a signed cancel goes to its node, delivered like any message
  running           (retries, and it waits for a node that is offline now):
                    there it is not run, or its process tree is ended.
  done, failed,     already final: nothing changes.
  expired, cancelled

The state becomes cancelled at once, with the reason "cancelled by USER@NODE".
Should the message have finished on its node before the cancel arrived, its
reply says so and the state becomes done (or failed) with that result.

Prints one line per message: "ID cancelled", "ID already final (STATE)",
"ID unknown" or "ID not cancelled: REASON". Exit status 1 when any message
named could not be cancelled.
`;

export async function cancelCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(CANCEL_HELP);
    return 0;
  }
  const args = argv.slice();
  const json = takeFlag(args, "json");
  const toNode = takeOption(args, "to").pop();
  const method = takeOption(args, "method").pop();
  // The same states, and the same error naming them, as steward status --state.
  const states = takeStates(args);
  const { values, rest: ids } = parseSettingFlags(args);
  const filtered = toNode !== undefined || states !== undefined || method !== undefined;
  if (ids.length === 0 && !filtered)
    throw new UsageError(`name the messages to cancel (IDs), or filters; see "steward cancel --help"`);
  if (ids.length > 0 && filtered)
    throw new UsageError(`give IDs or filters (--to, --state, --method), not both; see "steward cancel --help"`);
  const { path } = clientSocket(values);
  const views = await cancelMessages(path, {
    ids,
    by: userName(),
    ...(toNode !== undefined && { toNode }),
    ...(states && { states }),
    ...(method !== undefined && { method }),
  });
  if (json) process.stdout.write(`${JSON.stringify(views, null, 2)}\n`);
  else if (views.length === 0) process.stdout.write("no message matches\n");
  else
    for (const v of views) {
      const line =
        v.outcome === "cancelled"
          ? "cancelled"
          : v.outcome === "final"
            ? `already final (${v.state})`
            : v.outcome === "unknown"
              ? "unknown"
              : `not cancelled: ${v.reason}`;
      process.stdout.write(`${v.id} ${line}\n`);
    }
  return views.every((v) => v.outcome === "cancelled") ? 0 : 1;
}

/** Who asks, as the cancel's reason names them. */
function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? "unknown";
  }
}
