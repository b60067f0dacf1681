/** `steward status [ID]` and `steward nodes`: what state every message and node is in. */
import {
  findMessages,
  listNodes,
  messageStatus,
  watchMessages,
  type MessageFilter,
  type MessageView,
} from "../client/client.js";
import { formatLabels } from "../message/labels.js";
import { parseSettingFlags } from "../node/config.js";
import { clientSocket, labelOptions, takeFlag, takeInt, UsageError } from "./args.js";
import { ago, stateText, table } from "./format.js";
import { FILTER_HELP, isEmptyFilter, parseMessageFilter } from "./messageFilter.js";

export const STATUS_HELP = `Usage: steward status [ID] [filters] [--limit N] [--watch] [--json]

Without ID: the newest messages sent from the local node and their states
(pending, queued, sent, acked, waiting, running, done, failed, expired, cancelled),
newest first (at most --limit, 30 by default; a last line says when more match).
With ID: that message in full, with its result.

Filters (each narrows; repeat a flag, or give a comma list, for any of several):
${FILTER_HELP}

  --watch              print the matching messages, then one line per change as
                       the node stores it (time, id, node, method, old → new state),
                       until Ctrl-C; it asks the node every 0.5 s, and waits for it
                       across a restart
  --json               JSON: the message, or an array of messages; with --watch one
                       object a line: {"event": "current" | "change", "from"?, "message"}
`;

/** The rows `steward status` lists when --limit is not given. */
const DEFAULT_LIMIT = 30;

export const NODES_HELP = `Usage: steward nodes [--label KEY=VALUE]... [--json]

Nodes this node knows: last hello seen (on central), messages pending for
each (pending in a batch rollout, queued or sent, not yet ACKed), failed and
total, and the labels central's bundle gives each.

  --label KEY=VALUE   only the admitted nodes with that label (repeat, or
                      role=web,site=oslo: all must match); what
                      "steward send --to-label" would send to
`;

export async function statusCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(STATUS_HELP);
    return 0;
  }
  const args = argv.slice();
  const json = takeFlag(args, "json");
  const watch = takeFlag(args, "watch");
  const limit = takeInt(args, "limit") ?? DEFAULT_LIMIT;
  if (limit < 1) throw new UsageError(`--limit needs a number of messages, 1 or more; got ${limit}`);
  const filter = parseMessageFilter(args);
  const { values, rest } = parseSettingFlags(args);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"; see "steward status --help"`);
  const { path } = clientSocket(values);
  const id = rest[0];
  if (id && (watch || !isEmptyFilter(filter)))
    throw new UsageError(`status ID shows one message: no --watch or filters with it; see "steward status --help"`);
  if (watch) return watchStatus(path, filter, limit, json);
  if (id) {
    const m = await messageStatus(path, id);
    if (json) {
      process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `id:       ${m.id}`,
      `to:       ${m.toNode}`,
      `method:   ${m.method}`,
      `state:    ${stateText(m)}`,
      `attempts: ${m.attempt}`,
      `created:  ${m.createdAt}`,
      `updated:  ${m.updatedAt}`,
    ];
    if (m.result?.rerun) lines.push("note:     run again after the receiver restarted mid-run");
    if (m.result?.interrupted) lines.push("note:     interrupted by a stop of the receiver, run again at its start");
    if (m.result?.data) lines.push("--- result ---", m.result.data.replace(/\n$/, ""));
    if (m.result?.stderr) lines.push("--- stderr ---", m.result.stderr.replace(/\n$/, ""));
    if (m.result?.truncated) lines.push(`--- output cut: ${m.result.truncated} bytes dropped ---`);
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  }
  const { messages, more } = await findMessages(path, filter, limit);
  if (json) {
    process.stdout.write(`${JSON.stringify(messages, null, 2)}\n`);
    if (more) process.stderr.write(`${moreLine(limit)}\n`);
    return 0;
  }
  process.stdout.write(listing(messages, more, filter, limit));
  return 0;
}

/** The table of messages, or a line saying there are none; and one saying when more match. */
function listing(messages: MessageView[], more: boolean, filter: MessageFilter, limit: number): string {
  if (messages.length === 0)
    return isEmptyFilter(filter) ? "no messages sent from this node yet\n" : "no messages match\n";
  const rows = table(
    ["ID", "TO", "METHOD", "UPDATED", "STATE"],
    messages.map((m) => [m.id, m.toNode, m.method, ago(Date.parse(m.updatedAt)), stateText(m)]),
  );
  return `${rows}\n${more ? `${moreLine(limit)}\n` : ""}`;
}

function moreLine(limit: number): string {
  return `(more match than these ${limit}: --limit N shows more, --to, --state, --method or --since fewer)`;
}

/**
 * `steward status --watch`: the matching messages, then a line per change, until SIGINT or SIGTERM
 * (exit 0). What the node says when it goes away and comes back goes to stderr.
 */
async function watchStatus(path: string, filter: MessageFilter, limit: number, json: boolean): Promise<number> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    for await (const event of watchMessages(path, filter, { signal: stop.signal, limit })) {
      switch (event.type) {
        case "current":
          if (json)
            for (const message of event.messages)
              process.stdout.write(`${JSON.stringify({ event: "current", message })}\n`);
          else process.stdout.write(listing(event.messages, event.more, filter, limit));
          process.stderr.write("watching for changes; Ctrl-C to stop\n");
          break;
        case "change": {
          const { from, message: m } = event;
          if (json) process.stdout.write(`${JSON.stringify({ event: "change", from, message: m })}\n`);
          else
            process.stdout.write(
              `${clock(m.updatedAt)}  ${m.id}  ${m.toNode}  ${m.method}  ${from ?? "?"} → ${stateText(m)}\n`,
            );
          break;
        }
        case "lost":
          // Stopped, restarting, or closing the connection mid-answer: all the same to the operator.
          process.stderr.write(`lost the node at ${path}; waiting for it to answer again\n`);
          break;
        case "back":
          process.stderr.write("the node answers again; changes meanwhile follow\n");
          break;
      }
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}

/** "14:03:07": the local time of day of an ISO time. */
function clock(iso: string): string {
  return new Date(iso).toTimeString().slice(0, 8);
}

export async function nodesCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(NODES_HELP);
    return 0;
  }
  const args = argv.slice();
  const json = takeFlag(args, "json");
  const labels = labelOptions(args, "label");
  const { values, rest } = parseSettingFlags(args);
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"; see "steward nodes --help"`);
  const { path } = clientSocket(values);
  const view = await listNodes(path, labels);
  if (json) {
    process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    return 0;
  }
  if (view.nodes.length === 0) {
    process.stdout.write(
      labels
        ? `no admitted node has labels ${formatLabels(labels)}\n`
        : `${view.node} knows no nodes yet (hellos go to ${view.central})\n`,
    );
    return 0;
  }
  process.stdout.write(
    `${table(
      ["NODE", "LAST SEEN", "PENDING", "FAILED", "SENT", "LABELS"],
      view.nodes.map((n) => [
        n.name,
        ago(n.lastSeen),
        String(n.pending),
        String(n.failed),
        String(n.total),
        formatLabels(n.labels) || "-",
      ]),
    )}\n`,
  );
  return 0;
}
