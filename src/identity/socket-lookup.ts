// Finds the client's socket row in the TCP table of the namespace the client lives in.
// The table is streamed in chunks and reading stops at the matching row: the kernel formats
// rows as we read, so with thousands of sockets an early stop saves most of the work.
import { open } from 'node:fs/promises';
import { canonicalAddress, encodeEndpoint, type TableFamily } from './proc-net-address.js';
import { SocketRowMatcher, type SocketRow } from './socket-table.js';
import type { ConnectionTuple } from './types.js';
import { UnresolvedError, unresolvedFromFsError } from './unresolved.js';

const CHUNK_BYTES = 64 * 1024;

export interface SocketLookup {
  /** `/proc/self` for the proxy's own namespace, `/proc/<anchor>` for a sandbox's. */
  procRoot: string;
  /** Match on the client's end only (the connection was DNAT-redirected). */
  redirected: boolean;
}

export interface FoundSocket {
  row: SocketRow;
  family: TableFamily;
}

/** Which tables to read, in order, with the needle for each. Pure. */
export function socketNeedles(tuple: ConnectionTuple, redirected: boolean): Array<{ family: TableFamily; local: string; remote: string | null }> {
  const client = canonicalAddress(tuple.clientAddress);
  const proxy = canonicalAddress(tuple.proxyAddress);
  if (!client || !proxy) throw new UnresolvedError('no_socket_row', `not an IP address: ${client ? tuple.proxyAddress : tuple.clientAddress}`);
  if (!validPort(tuple.clientPort) || !validPort(tuple.proxyPort)) throw new UnresolvedError('no_socket_row', 'port out of range');
  if (!redirected && client.kind !== proxy.kind) throw new UnresolvedError('no_socket_row', 'client and proxy addresses are of different families');
  // An IPv4 client sits in `tcp`, unless it used an IPv6 socket (then IPv4-mapped in `tcp6`).
  const families: TableFamily[] = client.kind === 'ipv4' ? ['tcp', 'tcp6'] : ['tcp6'];
  return families.map((family) => ({
    family,
    local: encodeEndpoint(client, tuple.clientPort, family)!,
    remote: redirected ? null : encodeEndpoint(proxy, tuple.proxyPort, family),
  }));
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

export async function findClientSocket(tuple: ConnectionTuple, lookup: SocketLookup): Promise<FoundSocket> {
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  for (const needle of socketNeedles(tuple, lookup.redirected)) {
    const path = `${lookup.procRoot}/net/${needle.family}`;
    const matcher = new SocketRowMatcher(needle.local, needle.remote);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw unresolvedFromFsError(err, 'no_socket_row', `reading ${path}`);
    }
    try {
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, null);
        const row = bytesRead === 0 ? matcher.finish() : matcher.feed(buffer.toString('latin1', 0, bytesRead));
        if (row) return { row, family: needle.family };
        if (bytesRead === 0) break;
      }
    } catch (err) {
      throw unresolvedFromFsError(err, 'no_socket_row', `reading ${path}`);
    } finally {
      await handle.close();
    }
  }
  throw new UnresolvedError('no_socket_row', 'no established TCP socket with this 4-tuple in the namespace');
}
