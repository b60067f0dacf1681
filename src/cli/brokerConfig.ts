/**
 * `steward broker-config`: a nats-server configuration for a fleet, with one nkey per node and
 * least-privilege permissions (src/delivery/subjects.ts says which subjects each node needs), and
 * the nodes' seed files. Re-running keeps the seeds already in the folder, so adding a node does not
 * change the others' credentials.
 */
import { nkeys } from "@nats-io/transport-node";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { brokerPermissions } from "../delivery/subjects.js";
import { badTokenReason } from "../message/names.js";
import { takeOption, UsageError } from "./args.js";

export const BROKER_CONFIG_HELP = `Usage: steward broker-config --out DIR [--central NAME] [--listen HOST:PORT] NODE...

Writes a nats-server configuration for a fleet into DIR:

  DIR/nats-server.conf   one user per node (its nkey) with least-privilege permissions:
                         a node reads only what is addressed to it and its own reply
                         inbox, and publishes only subjects that name it as the sender
  DIR/NODE.nk            each node's nkey seed (mode 0600): copy it to that node only

Central (--central, default "central") is always included. Seeds already in DIR
are kept, so running it again with one more node adds that node and leaves the
others' credentials as they are; a node left off the list loses its access.

  --out DIR            where to write (created, mode 0700)
  --central NAME       the central node's name (its centralNodeName setting)
  --listen HOST:PORT   where the broker listens (default 0.0.0.0:4222)

Then:
  nats-server -c DIR/nats-server.conf       (a running one: nats-server --signal reload)
  steward start --node-name=ship1 --nkey-seed-file=/etc/steward/ship1.nk --broker-address=nats://broker:4222

Add a tls { cert_file, key_file } block to the configuration to encrypt the links
(docs/SECURITY.md, "The broker's part").
`;

export function brokerConfigCommand(argv: string[]): number {
  if (argv.length === 0 || argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(BROKER_CONFIG_HELP);
    return 0;
  }
  const args = argv.slice();
  const out = takeOption(args, "out").pop();
  const central = takeOption(args, "central").pop() ?? "central";
  const listen = takeOption(args, "listen").pop() ?? "0.0.0.0:4222";
  const unknown = args.find((a) => a.startsWith("-"));
  if (unknown) throw new UsageError(`unknown option ${unknown}; see "steward broker-config --help"`);
  if (!out) throw new UsageError(`--out DIR is required: the folder to write the configuration and seeds into`);
  const nodes = [...new Set([central, ...args])];
  for (const n of nodes) {
    const bad = badTokenReason(n);
    if (bad) throw new UsageError(`node name ${bad}`);
  }
  const { confPath, dir } = writeBrokerConfig(out, nodes, central, listen);
  process.stdout.write(`wrote ${confPath} (${nodes.length} nodes: ${nodes.join(", ")})\n`);
  const left = readdirSync(dir).filter((f) => f.endsWith(".nk") && !nodes.includes(f.slice(0, -3)));
  for (const f of left) process.stdout.write(`${f} is not in the configuration any more (delete it if it is gone)\n`);
  process.stdout.write(
    `next: nats-server -c ${confPath}; copy ${join(dir, "NODE.nk")} to each node and start it with --nkey-seed-file\n`,
  );
  return 0;
}

/** Write `dir/nats-server.conf` for `nodes` and a seed file per node (kept when it exists). */
export function writeBrokerConfig(
  out: string,
  nodes: string[],
  central: string,
  listen: string,
): { dir: string; confPath: string; seedFile: (node: string) => string } {
  const dir = resolve(out);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const seedFile = (node: string) => join(dir, `${node}.nk`);
  const users = nodes.map((node) => ({ node, publicKey: seedOf(seedFile(node)) }));
  const confPath = join(dir, "nats-server.conf");
  writeFileSync(confPath, serverConfig(users, central, listen), { mode: 0o600 });
  return { dir, confPath, seedFile };
}

/** The public key of the seed in `path`, written first (0600) when there is none. */
function seedOf(path: string): string {
  if (existsSync(path)) {
    if ((statSync(path).mode & 0o077) !== 0)
      throw new UsageError(`${path} can be read by other users: chmod 600 ${path}, or delete it to make a new one`);
    const seed = readFileSync(path, "utf8").trim();
    try {
      return nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
    } catch {
      throw new UsageError(`${path} holds no user nkey seed (SU…): delete it to make a new one`);
    }
  }
  const kp = nkeys.createUser();
  writeFileSync(path, `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600, flag: "wx" });
  return kp.getPublicKey();
}

/** nats-server's configuration format; JSON strings are valid in it. */
export function serverConfig(users: { node: string; publicKey: string }[], central: string, listen: string): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  const entries = users.map(({ node, publicKey }) => {
    const p = brokerPermissions(node, central);
    return `    # ${node}
    {
      nkey: ${JSON.stringify(publicKey)}
      permissions: {
        publish: { allow: ${list(p.publish)} }
        subscribe: { allow: ${list(p.subscribe)} }
        # answering a request (the ACK) is allowed on that request's reply subject only
        allow_responses: true
      }
    }`;
  });
  return `# A nats-server configuration for a Steward fleet, written by "steward broker-config".
# Each node has its own nkey. It may read only what is addressed to it (<node>.>), its own reply
# inbox, nodes' presence and central's bundle, and publish only subjects that name it as the sender
# (*.*.<node>), so a stolen credential cannot read other nodes' traffic or speak as another node.
listen: ${JSON.stringify(listen)}

authorization {
  users: [
${entries.join("\n")}
  ]
}
`;
}
