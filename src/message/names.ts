/**
 * The rules for names. A node's name and a method's name are tokens of the
 * subjects messages travel on (see src/delivery/subjects.ts), and a node's
 * name also names its folders; a result's fileName and directory name where
 * it is written (src/methods/paths.ts).
 */

/** Why a name cannot be a NATS subject token, or undefined when it can. */
export function badTokenReason(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name.length > 128) return "is longer than 128 characters";
  if (name.startsWith("_"))
    return `"${name}" starts with "_", which Steward keeps for its own subjects (_online, _INBOX …)`;
  if (name.includes(".")) return `"${name}" contains a dot, which separates NATS subject tokens`;
  if (/[\\/]/.test(name)) return `"${name}" contains a slash; node names also name folders`;
  if (/[\s*>]/.test(name)) return `"${name}" contains a space, "*" or ">", which NATS subjects do not allow`;
  if ([...name].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    return `"${name}" contains a control character`;
  return undefined;
}

/** Why a result's fileName cannot be used, or undefined when it can: it names a file, never a path. */
export function fileNameProblem(fileName: string): string | undefined {
  return fileName === "" || fileName === "." || fileName === ".." || /[\\/]/.test(fileName)
    ? `must be a plain file name without "/" or ".."`
    : undefined;
}

/** Why a result's directory cannot be used, or undefined when it can (an absolute one is the operator's own). */
export function directoryProblem(directory: string): string | undefined {
  return directory.split(/[\\/]/).includes("..")
    ? `must not contain "..": a result is written below its folder, never above it`
    : undefined;
}
