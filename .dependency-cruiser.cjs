/**
 * The layers of src/, bottom first: a file may import from its own layer and
 * the layers below it, never from one above, and no import may close a circle.
 * `npm test` runs this (npm run check → npm run layers); see docs/ARCHITECTURE.md.
 */
const LAYERS = [
  "src/(errors|timers|log|listen|umask)\\.ts$", // leaves: no imports of Steward's own
  "src/message/", // the message model, names and parsing
  "src/security/", // keys, signed frames, central's bundle, the rules
  "src/store/", // the local SQLite store
  "src/methods/", // one file per method
  "src/delivery/", // broker link, outbox, inbox, subscribers
  "src/observe/", // metrics, audit log, data folder view
  "src/inputs/", // socket, listeners, folders; the query protocol
  "src/node/", // settings and the runtime that wires the layers below
  "src/client/", // talking to a node through its socket
  "src/harness/", // a broker and nodes as child processes: demo, tests, chaos, bench
  "src/cli/", // the steward executable
  "src/index\\.ts$", // the public surface
];

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "imports must not run in a circle",
      from: {},
      to: { circular: true },
    },
    // The top layer has nothing above it: no rule of its own (an empty `to` would match every import).
    ...LAYERS.slice(0, -1).map((layer, i) => ({
      name: `no-upward-from-${i}`,
      severity: "error",
      comment: `${layer} imports only from its own layer and those below it`,
      from: { path: layer },
      to: { path: LAYERS.slice(i + 1) },
    })),
    {
      name: "no-tests-in-src",
      severity: "error",
      comment: "runtime code does not import tests, benchmarks or the chaos suite",
      from: { path: "^src/" },
      to: { path: "^(test|bench|chaos)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
  },
};
