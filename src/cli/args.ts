/** Small helpers for the CLI's own flags (settings flags are in node/config.ts). */
import { UsageError } from "../errors.js";
import { type Labels, parseLabelList } from "../message/labels.js";
import { type Config, loadConfig, type ParsedFlags, socketPath } from "../node/config.js";

/** Thrown by the helpers below; the CLI's commands import it from here. */
export { UsageError };

/** Take `--name value`, `--name=value` (repeatable) out of args. */
export function takeOption(args: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") break;
    if (a === `--${name}`) {
      const v = args[i + 1];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      values.push(v);
      args.splice(i, 2);
      i--;
    } else if (a.startsWith(`--${name}=`)) {
      values.push(a.slice(name.length + 3));
      args.splice(i, 1);
      i--;
    }
  }
  return values;
}

/** Every `--NAME KEY=VALUE[,KEY=VALUE]` as one set of labels, or undefined when none is given. */
export function labelOptions(args: string[], name: string): Labels | undefined {
  const given = takeOption(args, name);
  if (given.length === 0) return undefined;
  try {
    return parseLabelList(given);
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
}

export function takeFlag(args: string[], name: string): boolean {
  const end = args.indexOf("--");
  const i = args.indexOf(`--${name}`);
  if (i < 0 || (end >= 0 && i > end)) return false;
  args.splice(i, 1);
  return true;
}

export function takeInt(args: string[], name: string): number | undefined {
  const v = takeOption(args, name).pop();
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`--${name} needs a whole number, got "${v}"`);
  return n;
}

/** The socket of the local node, found the way the node itself would find it. */
export function clientSocket(flags: ParsedFlags["values"]): { path: string; config: Config } {
  const config = loadConfig(flags, { persist: false });
  return { path: socketPath(config), config };
}
