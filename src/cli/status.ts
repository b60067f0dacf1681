/** `steward status [ID]` and `steward nodes`: what state every message and node is in. */
import { listMessages, listNodes, messageStatus } from "../client/client.js";
import { formatLabels } from "../message/labels.js";
import { parseSettingFlags } from "../node/config.js";
import { clientSocket, labelOptions, takeFlag, takeInt, UsageError } from "./args.js";
import { ago, stateText, table } from "./format.js";

export const STATUS_HELP = `Usage: steward status [ID] [--limit N] [--json]

Without ID: the newest messages sent from the local node and their states
(queued, sent, acked, waiting, running, done, failed, expired, cancelled).
With ID: that message in full, with its result.
`;

export const NODES_HELP = `Usage: steward nodes [--label KEY=VALUE]... [--json]

Nodes this node knows: last hello seen (on central), messages pending for
each (queued or sent, not yet ACKed), failed and total, and the labels
central's bundle gives each.

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
  const limit = takeInt(args, "limit") ?? 30;
  const { values, rest } = parseSettingFlags(args);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"; see "steward status --help"`);
  const { path } = clientSocket(values);
  const id = rest[0];
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
    if (m.result?.data) lines.push("--- result ---", m.result.data.replace(/\n$/, ""));
    if (m.result?.stderr) lines.push("--- stderr ---", m.result.stderr.replace(/\n$/, ""));
    if (m.result?.truncated) lines.push(`--- output cut: ${m.result.truncated} bytes dropped ---`);
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  }
  const messages = await listMessages(path, limit);
  if (json) {
    process.stdout.write(`${JSON.stringify(messages, null, 2)}\n`);
    return 0;
  }
  if (messages.length === 0) {
    process.stdout.write("no messages sent from this node yet\n");
    return 0;
  }
  process.stdout.write(
    `${table(
      ["ID", "TO", "METHOD", "UPDATED", "STATE"],
      messages.map((m) => [m.id, m.toNode, m.method, ago(Date.parse(m.updatedAt)), stateText(m)]),
    )}\n`,
  );
  return 0;
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
