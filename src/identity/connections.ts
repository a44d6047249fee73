// The connections at one endpoint, for `portcullis whois`: which client ends to resolve.
import { readFileSync } from 'node:fs';
import { canonicalAddress, type Endpoint } from './proc-net-address.js';
import { parseSocketTable, TCP_ESTABLISHED, TCP_LISTEN, type SocketRow } from './socket-table.js';
import type { ConnectionTuple } from './types.js';

const WILDCARDS = new Set(['0.0.0.0', '::']);

function same(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

/**
 * The client ends of the established connections that have `endpoint` at one end. When the
 * endpoint is a client's own (it has a row here and nothing listens on it) that client alone;
 * otherwise it is a server's, and every peer connected to it is a client. Pure.
 */
export function clientEndsAt(rows: readonly SocketRow[], endpoint: Endpoint): ConnectionTuple[] {
  const canonical = canonicalAddress(endpoint.address);
  if (!canonical) throw new Error(`"${endpoint.address}" is not an IP address`);
  const target = { address: canonical.text, port: endpoint.port };
  const listening = rows.some(
    (r) => r.state === TCP_LISTEN && r.local.port === target.port && (r.local.address === target.address || WILDCARDS.has(r.local.address)),
  );
  const established = rows.filter((r) => r.state === TCP_ESTABLISHED);
  const tuple = (client: Endpoint, server: Endpoint): ConnectionTuple => ({
    clientAddress: client.address,
    clientPort: client.port,
    proxyAddress: server.address,
    proxyPort: server.port,
  });
  const own = established.filter((r) => same(r.local, target));
  if (!listening && own.length > 0) return own.map((r) => tuple(r.local, r.remote));
  const clients = new Map<string, ConnectionTuple>();
  for (const r of own) clients.set(`${r.remote.address}|${r.remote.port}`, tuple(r.remote, target));
  for (const r of established) if (same(r.remote, target)) clients.set(`${r.local.address}|${r.local.port}`, tuple(r.local, target));
  return [...clients.values()];
}

/** Every row of a namespace's tcp and tcp6 tables (`/proc/self` or `/proc/<anchor>`). */
export function readSocketRows(procRoot: string): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const family of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/net/${family}`, 'latin1');
    } catch (err) {
      // A kernel without IPv6 has no tcp6 table.
      if (family === 'tcp6' && (err as { code?: string }).code === 'ENOENT') continue;
      throw err;
    }
    rows.push(...parseSocketTable(text).rows);
  }
  return rows;
}
