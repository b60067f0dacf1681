/**
 * Structured logs on stderr, one line each: time, level, node, message, then
 * key=value fields. Plain enough to read, regular enough to grep and parse.
 */
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(
  node: string,
  level: Level = "info",
  out: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const emit = (lvl: Level, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const parts = [new Date().toISOString(), lvl.padEnd(5), `node=${node}`, JSON.stringify(msg)];
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      const s = typeof v === "string" ? v : JSON.stringify(v);
      parts.push(`${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`);
    }
    out(`${parts.join(" ")}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
