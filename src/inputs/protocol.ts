/**
 * What every input answers, per message: the accepted id, or the error.
 * On the socket (and in the read folder's error files) it is one line each:
 *
 *   accepted <id> <toNode> <method>
 *   accepted <id> <toNode> <method> (already accepted)
 *   error message <n>, field "<f>": <reason>
 *
 * A connection that starts with "STEWARD/1 " is a query instead (see queries.ts).
 */
export type AcceptAnswer =
  | { ok: true; id: string; toNode: string; method: string; duplicate?: boolean }
  | { ok: false; error: string; index?: number };

export function answerLine(a: AcceptAnswer): string {
  const line = a.ok
    ? `accepted ${a.id} ${a.toNode} ${a.method}${a.duplicate ? " (already accepted)" : ""}`
    : `error ${a.error}`;
  // One line per message, whatever the input quoted back holds.
  return line.replace(/[\r\n]/g, (c) => (c === "\n" ? "\\n" : "\\r"));
}

export function parseAnswerLine(line: string): AcceptAnswer {
  const ok = /^accepted (\S+) (\S+) (\S+)( \(already accepted\))?$/.exec(line);
  if (ok)
    return {
      ok: true,
      id: ok[1] as string,
      toNode: ok[2] as string,
      method: ok[3] as string,
      ...(ok[4] && { duplicate: true }),
    };
  const index = /^error message (\d+)/.exec(line);
  return { ok: false, error: line.replace(/^error /, ""), ...(index && { index: Number(index[1]) }) };
}

/** An input hands documents to the node through this. */
export interface Acceptor {
  /** Parse, check and store every message of a document; answers once they are on disk; never rejects for bad input. */
  accept(text: string, source: string): Promise<AcceptAnswer[]>;
}
