/**
 * `steward send`: hand messages to the local node.
 *   steward send [--to NODE]… [--to-label K=V]… [--method M] [--batch N|P%] [--max-errors N] [--wait] [--timeout S] -- ARGS…
 *   steward send FILE        (JSON or YAML; "-" reads stdin)
 */
import { readFileSync } from "node:fs";
import { listenerToken, type MessageView, submit, submitHttp, submitTcp, waitForFinal } from "../client/client.js";
import { answerLine } from "../inputs/protocol.js";
import { isFinal } from "../message/message.js";
import { parseSettingFlags } from "../node/config.js";
import { clientSocket, labelOptions, takeFlag, takeInt, takeOption, UsageError } from "./args.js";
import { stateText } from "./format.js";
import { ROLLOUT_STOPPED_EXIT, RolloutProgress, rolloutSummary } from "./rollout.js";

export const SEND_HELP = `Usage:
  steward send [--to NODE]... [--to-label K=V]... [--method M] [--batch N|P%]
               [--max-errors N] [--wait] [--timeout S] -- ARGS...
  steward send [--wait] [--timeout S] FILE      (JSON or YAML; "-" reads stdin)

Hands messages to the local node (through its socket), which stores them and
takes care of delivery. Prints one line per message: the accepted id, or
the error.

  --to NODE              target node; repeat for several (one message each)
  --to-label K=V         every admitted node with that label (repeat, or
                         K=V,K2=V2: all must match; toLabels); with --to,
                         the nodes of both, each once
  --method M             method to run (default cliCommand; seed REQ... names work)
  --reply-method M       what the sender does with the result (default fileAppend)
  --ack-timeout S        seconds to wait for each ACK (ACKTimeout)
  --retries N            re-sends when no ACK comes (retries)
  --method-timeout S     seconds the method may run (methodTimeout; -1 = no limit)
  --deliver-by T         wait for an absent target until T, never failing for
                         spent retries; past T it ends expired (deliverBy). T is
                         a time (2026-12-01T08:00:00Z) or from now: 90s, 30m,
                         12h, 3d, or plain seconds
  --run-by T             not run when it cannot start on the target by T
                         (runBy; same forms): it ends expired
  --id ID                your own id: sending the same id again runs it once
  --batch N|P%           roll out in waves: N targets (or P% of them, at least
                         1) at a time, the next wave once the last has ended
  --max-errors N         with --batch: send no further wave once more than N
                         messages failed, expired or exited non-zero (the
                         rest stay pending)
  --wait                 wait for the results, print them per node (and each
                         wave of a rollout as it goes); the exit status is 0
                         when every message is done with exit 0, 1 when not,
                         3 when a rollout stopped at --max-errors
  --timeout S            how long --wait waits (default 60)
  --socket-folder DIR    where the node's steward.sock is (or --config-folder)
  --tcp HOST:PORT        hand them to the node's TCP listener instead, and
  --http HOST:PORT       ... or to its HTTP listener; both send the token
                         from --config-folder's listener.token (--wait still
                         asks the local socket)

Examples:
  steward send --to ship1 --to ship2 --wait -- uname -a
  steward send --to-label role=web --wait -- systemctl status nginx
  steward send --to ship1 --wait -- bash -c 'df -h / | tail -1'
  steward send --to ship1 --deliver-by 3d --run-by 4d -- apt-get -y upgrade
  steward send --to s1 --to s2 --to s3 --to s4 --batch 50% --max-errors 0 --wait -- apt-get -y upgrade
  steward send messages.json
`;

export async function sendCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(SEND_HELP);
    return 0;
  }
  const dash = argv.indexOf("--");
  const commandArgs = dash >= 0 ? argv.slice(dash + 1) : [];
  const args = dash >= 0 ? argv.slice(0, dash) : argv.slice();
  const wait = takeFlag(args, "wait");
  const timeout = takeInt(args, "timeout") ?? 60;
  const to = takeOption(args, "to");
  const toLabels = labelOptions(args, "to-label");
  const method = takeOption(args, "method").pop();
  const replyMethod = takeOption(args, "reply-method").pop();
  const ackTimeout = takeInt(args, "ack-timeout");
  const retries = takeInt(args, "retries");
  const methodTimeout = takeInt(args, "method-timeout");
  const id = takeOption(args, "id").pop();
  const deliverBy = takeOption(args, "deliver-by").pop();
  const runBy = takeOption(args, "run-by").pop();
  const batch = takeOption(args, "batch").pop();
  const maxErrors = takeInt(args, "max-errors");
  const tcp = takeOption(args, "tcp").pop();
  const http = takeOption(args, "http").pop();
  const { values, rest } = parseSettingFlags(args);
  const { path, config } = clientSocket(values);

  let document: string;
  if (to.length > 0 || toLabels || commandArgs.length > 0) {
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}": put the command after "--"`);
    if (to.length === 0 && !toLabels)
      throw new UsageError("say which node runs it: --to NODE or --to-label KEY=VALUE (repeat for several)");
    const message: Record<string, unknown> = { method: method ?? "cliCommand", methodArgs: commandArgs };
    if (to.length > 0) message.toNodes = to;
    if (toLabels) message.toLabels = toLabels;
    if (replyMethod) message.replyMethod = replyMethod;
    if (ackTimeout !== undefined) message.ACKTimeout = ackTimeout;
    if (retries !== undefined) message.retries = retries;
    if (methodTimeout !== undefined) message.methodTimeout = methodTimeout;
    if (id) message.id = id;
    if (deliverBy !== undefined) message.deliverBy = deliverBy;
    if (runBy !== undefined) message.runBy = runBy;
    // A whole number travels as one; "10%" as the string the node reads as a percentage.
    if (batch !== undefined) message.batch = /^\d+$/.test(batch) ? Number(batch) : batch;
    if (maxErrors !== undefined) message.maxErrors = maxErrors;
    document = JSON.stringify(message);
  } else {
    if (batch !== undefined || maxErrors !== undefined)
      throw new UsageError('--batch and --max-errors go with --to; in a FILE, give "batch" and "maxErrors" fields');
    const file = rest[0];
    if (!file || rest.length > 1)
      throw new UsageError('give one FILE of messages, or "--to NODE -- COMMAND"; see "steward send --help"');
    try {
      document = readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read ${file === "-" ? "standard input" : file}: ${(err as Error).message}`);
    }
  }

  const answers = tcp
    ? await submitTcp(tcp, listenerToken(config.configFolder), document)
    : http
      ? await submitHttp(http, listenerToken(config.configFolder), document)
      : await submit(path, document);
  if (answers.length === 0) throw new Error("the node gave no answer; see its log");
  for (const a of answers) (a.ok ? process.stdout : process.stderr).write(`${answerLine(a)}\n`);
  const accepted = answers.flatMap((a) => (a.ok ? [a.id] : []));
  const refused = answers.length - accepted.length;
  if (!wait) return refused > 0 ? 1 : 0;

  const waves = new RolloutProgress((line) => process.stderr.write(`${line}\n`));
  const results = await waitForFinal(path, accepted, {
    timeoutMs: timeout * 1000,
    onChange: (m) => {
      if (m.state !== "done" && m.state !== "failed" && m.state !== "pending")
        process.stderr.write(`  ${m.toNode}: ${stateText(m)}\n`);
    },
    onRound: (latest) => waves.round(latest),
  });
  let ok = refused === 0;
  for (const id of accepted) {
    const m = results.get(id) as MessageView;
    const full = m.state === "done" || m.state === "failed" ? m : undefined;
    process.stdout.write(`\n== ${m.toNode} (${m.id}): ${stateText(m)}\n`);
    const r = full?.result;
    if (r?.data) process.stdout.write(r.data.endsWith("\n") ? r.data : `${r.data}\n`);
    if (r?.stderr) process.stdout.write(`-- stderr --\n${r.stderr}${r.stderr.endsWith("\n") ? "" : "\n"}`);
    if (r?.truncated) process.stdout.write(`-- output cut: ${r.truncated} bytes dropped --\n`);
    if (m.state === "pending" && m.batch?.state === "stopped")
      process.stdout.write(`   not sent: the rollout stopped at its max-errors\n`);
    else if (!isFinal(m.state))
      process.stdout.write(`   still ${m.state} after ${timeout}s; ask later with: steward status ${m.id}\n`);
    if (m.state !== "done" || m.exitCode !== 0) ok = false;
  }
  const summary = rolloutSummary(results);
  if (summary.lines.length > 0) process.stdout.write(`\n${summary.lines.join("\n")}\n`);
  if (summary.stopped) return ROLLOUT_STOPPED_EXIT;
  return ok ? 0 : 1;
}
