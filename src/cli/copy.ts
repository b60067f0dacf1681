/** `steward copy [NODE:]PATH NODE:PATH`: copy a file between nodes (a copySrc message to the source node). */
import { health, submit, waitForFinal } from "../client/client.js";
import { answerLine } from "../inputs/protocol.js";
import { isFinal } from "../message/message.js";
import { parseSettingFlags } from "../node/config.js";
import { clientSocket, takeFlag, takeInt, takeOption, UsageError } from "./args.js";
import { stateText } from "./format.js";

export const COPY_HELP = `Usage: steward copy [NODE:]PATH [NODE:]PATH [--chunk-size N] [--mode MODE]
                    [--max-time S] [--wait]

Copies a file from one node to another: hands a copySrc message to the local
node, which sends it to the source node; the source sends the file to the
destination in signed chunks, each checked against its sha256 and answered,
and the destination renames it into place once all of them are there. A
restart of either end goes on from the chunks already there. A PATH without
NODE: is on the local node; the destination's PATH is inside its data folder
when relative.

  --chunk-size N     bytes per chunk (default 524288; at most what fits in one
                     message of the broker's max_payload; on a link slower
                     than about 0.5 Mbit/s a smaller one, e.g. 65536)
  --mode MODE        the mode of the file written, e.g. 0600 (default: the
                     source file's)
  --max-time S       seconds the copy may take (default 3600)
  --wait             show its progress, then the path, size and sha256 written;
                     exit status 0 when the copy is done
  --socket-folder DIR  where the node's steward.sock is (or --config-folder)

Examples:
  steward copy /etc/hosts ship1:hosts --wait
  steward copy ship1:/var/log/syslog ship2:logs/ship1-syslog --wait
`;

/** "NODE:PATH" → [NODE, PATH]; a PATH without one (or starting with "/" or ".") is the local node's. */
function splitTarget(arg: string, local: string): [string, string] {
  const m = /^([^/.:][^/:]*):(.+)$/.exec(arg);
  return m ? [m[1] as string, m[2] as string] : [local, arg];
}

export async function copyCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(COPY_HELP);
    return 0;
  }
  const args = argv.slice();
  const wait = takeFlag(args, "wait");
  const chunkSize = takeInt(args, "chunk-size");
  const maxTime = takeInt(args, "max-time") ?? 3600;
  const mode = takeOption(args, "mode").pop() ?? "";
  const { values, rest } = parseSettingFlags(args);
  if (rest.length !== 2)
    throw new UsageError('give a source and a destination, e.g. "steward copy /etc/hosts ship1:hosts"');
  const { path } = clientSocket(values);
  const local = (await health(path)).node;
  const [srcNode, srcPath] = splitTarget(rest[0] as string, local);
  const [dstNode, dstPath] = splitTarget(rest[1] as string, local);
  const message = {
    toNode: srcNode,
    method: "copySrc",
    methodArgs: [srcPath, dstNode, dstPath, chunkSize === undefined ? "" : String(chunkSize), String(maxTime), mode],
    methodTimeout: maxTime,
    replyMethod: "none",
  };
  const answers = await submit(path, JSON.stringify(message));
  for (const a of answers) (a.ok ? process.stdout : process.stderr).write(`${answerLine(a)}\n`);
  const id = answers[0]?.ok ? answers[0].id : undefined;
  if (id === undefined) return 1;
  if (!wait) return 0;
  let shown = "";
  const results = await waitForFinal(path, [id], {
    timeoutMs: (maxTime + 60) * 1000,
    onChange: (m) => {
      // While it runs, the latest part of its result says how far the copy is.
      const line = m.result?.partial ? (m.result.data ?? "").trim() : stateText(m);
      if (line !== shown) process.stderr.write(`  ${line}\n`);
      shown = line;
    },
  });
  const m = results.get(id);
  if (!m) return 1;
  process.stdout.write(`${stateText(m)}\n`);
  if (m.result?.data && !m.result.partial) process.stdout.write(m.result.data);
  if (!isFinal(m.state)) process.stdout.write(`still ${m.state}; ask later with: steward status ${m.id}\n`);
  return m.state === "done" && m.exitCode === 0 ? 0 : 1;
}
