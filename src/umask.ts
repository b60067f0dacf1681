/**
 * The node's own files (store, results, logs, audit log, keys, token, socket) are its user's alone:
 * it runs with umask 077. The commands it runs for messages (cliCommand, opProcessStart …) get the
 * umask the node was started with, so that what an operator's command creates is as it would be
 * from a shell, not silently private.
 */
let inherited: number | undefined;

/** From now on, files and folders this process creates are private (umask 077). */
export function makeFilesPrivate(): void {
  const before = process.umask(0o077);
  inherited ??= before;
}

/**
 * Run `spawn` with the umask the process was started with. A child takes its umask when it is forked,
 * which Node does synchronously inside spawn(), so the looser umask lasts only for that call.
 */
export function withInheritedUmask<T>(spawn: () => T): T {
  if (inherited === undefined) return spawn();
  const own = process.umask(inherited);
  try {
    return spawn();
  } finally {
    process.umask(own);
  }
}
