/**
 * Who may write a file through copyDst (docs/SECURITY.md, "Copy"). A copyDst comes from the source node, which
 * reads the file; it is let in only when it carries a copySrc request that
 *
 *   - verifies against its operator's admitted key, on the subject it was sent on to this source,
 *   - names this node as dstNode (dstPath, mode and the copy's id are taken from it, never from the chunk),
 *   - came from an operator whom central's rules allow copyDst here, and
 *   - names an absolute dstPath only when its operator is central or this node itself: another operator's
 *     copy writes inside the data folder, as a file request from another node does.
 *
 * So a source cannot write anything the operator did not ask for, and a node that never got a copySrc cannot
 * send chunks at all.
 */
import type { Envelope } from "../message/message.js";
import { argsProblem, canonicalMethod } from "../message/methods.js";
import { readGrant } from "../methods/copyArgs.js";
import { allows, notAllowed } from "../security/acl.js";
import type { Trust } from "../security/trust.js";
import { methodSubject } from "./subjects.js";

/** Why `chunk` (a copyDst request) may not be let in here, or undefined when its grant allows it. */
export function grantProblem(
  trust: Trust,
  chunk: Envelope,
  nodeName: string,
  centralNodeName: string | undefined,
): string | undefined {
  const source = chunk.fromNode;
  if (!trust.admitted(source)) return `not allowed: ${source} is no longer admitted by central`;
  const grant = readGrant(chunk.methodArgs[1] ?? "");
  if (!grant) return "not allowed: copyDst without the copySrc request it is part of (its grant)";
  const operator = grant.signer;
  const opened = trust.open(
    Buffer.from(chunk.methodArgs[1] ?? "", "base64"),
    methodSubject(source, "copySrc", operator),
  );
  if (!opened.ok) return `not allowed: the grant of this copyDst does not verify (${opened.problem})`;
  const { request } = grant;
  if (
    canonicalMethod(String(request.method)) !== "copySrc" ||
    request.fromNode !== operator ||
    request.toNode !== source ||
    request.requestId !== undefined
  )
    return `not allowed: the grant of this copyDst is not a copySrc from ${operator} to ${source}`;
  if (request.methodArgs[1] !== nodeName)
    return `not allowed: the copy ${request.id} goes to ${String(request.methodArgs[1])}, not to ${nodeName}`;
  const bad = argsProblem("copySrc", request);
  if (bad) return `not allowed: ${bad.reason}`;
  const dstPath = request.methodArgs[2] ?? "";
  if (dstPath.startsWith("/") && operator !== centralNodeName && operator !== nodeName)
    return `not allowed: a copy from ${operator} writes inside ${nodeName}'s data folder: use a relative dstPath`;
  if (!allows(trust.acl, trust.member(operator), "copyDst", trust.member(nodeName), []))
    return `${notAllowed(operator, "copyDst", nodeName)} (the operator of copy ${request.id})`;
  return undefined;
}
