// `portcullis whois ADDR:PORT [--anchor PID]`: who is behind a connection, for debugging a policy.
import type { Command } from 'commander';
import { clientEndsAt, readSocketRows } from '../../identity/connections.js';
import { formatEndpoint } from '../../identity/proc-net-address.js';
import { IdentityResolver } from '../../identity/resolver.js';
import { parseHostPort } from '../repeatable.js';
import { portcullisCacheDir } from '../../util/cache-dir.js';

interface WhoisOptions {
  anchor?: number;
  exhaustive?: boolean;
}

function parsePid(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < 1) throw new Error(`--anchor "${text}" is not a pid`);
  return Number(text);
}

const HELP = `
ADDR:PORT names one end of an established TCP connection in the network namespace of
--anchor PID (default: this process's namespace). If it is a client's end, the process
that owns that client socket is printed; if it is a server's end (something listens on it),
every client connected to it is printed. Output: a JSON array of
{"client": "ADDR:PORT", "server": "ADDR:PORT", "identity": {path, pid, ancestors, cmdline,
sha256, unresolved_reason?}}. Exit 1 when no established connection has that end.

Examples:
  portcullis whois 127.0.0.1:3128             # every client of a proxy listening there
  portcullis whois 10.0.0.2:51234 --anchor 4242   # one client inside a sandbox`;

export function registerWhois(program: Command): void {
  program
    .command('whois')
    .description('print the identity of the process behind a connection (JSON)')
    .argument('<endpoint>', 'ADDR:PORT of either end of the connection (IPv6 as [::1]:PORT)')
    .option('--anchor <pid>', 'first process of the sandbox whose network namespace holds the connection', parsePid)
    .option('--exhaustive', "read every process's fd table (also finds sockets passed to unrelated processes)")
    .addHelpText('after', HELP)
    .action(async (endpointText: string, opts: WhoisOptions) => {
      let endpoint;
      try {
        const { host, port } = parseHostPort(endpointText);
        endpoint = { address: host, port };
      } catch (err) {
        process.stderr.write(`portcullis whois: ${(err as Error).message}\n`);
        process.exit(2);
      }
      const procRoot = opts.anchor === undefined ? '/proc/self' : `/proc/${opts.anchor}`;
      let tuples;
      try {
        tuples = clientEndsAt(readSocketRows(procRoot), endpoint);
      } catch (err) {
        process.stderr.write(`portcullis whois: ${(err as Error).message}\n`);
        process.exit(2);
      }
      if (tuples.length === 0) {
        process.stderr.write(`portcullis whois: no established TCP connection at ${endpointText}\n`);
        process.exit(1);
      }
      const resolver = new IdentityResolver({ exhaustiveOwnerSearch: opts.exhaustive === true, hashStore: portcullisCacheDir('executable-hashes.json') });
      const out = [];
      for (const tuple of tuples) {
        const identity = await resolver.resolve(tuple, opts.anchor === undefined ? {} : { anchorPid: opts.anchor });
        out.push({
          client: formatEndpoint({ address: tuple.clientAddress, port: tuple.clientPort }),
          server: formatEndpoint({ address: tuple.proxyAddress, port: tuple.proxyPort }),
          identity,
        });
      }
      resolver.close();
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });
}
