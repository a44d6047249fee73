// Finds the client's socket row in the TCP table of the namespace the client lives in.
// The table is read in chunks and reading stops at the matching row: the kernel formats rows
// as we read, one page (about 27 rows) per read(2), so with thousands of sockets an early stop
// saves most of the work. Each read is a few tens of microseconds of kernel work, so they are
// done synchronously (a thread-pool hop per page would cost more than the read) with a pause
// for the event loop every few pages.
import { closeSync, openSync, readSync } from 'node:fs';
import { yieldToEventLoop } from './process-table.js';
import { canonicalAddress, encodeEndpoint, type TableFamily } from './proc-net-address.js';
import { SocketRowMatcher, type SocketRow } from './socket-table.js';
import type { ConnectionTuple } from './types.js';
import { UnresolvedError, unresolvedFromFsError } from './unresolved.js';

const CHUNK_BYTES = 64 * 1024;
/**
 * The kernel fills each read up to a page, less at most one row; a shorter read can only be
 * the last. Stopping there saves the read that would return 0, which costs a second walk of
 * the kernel's whole socket hash table (milliseconds when the table is large).
 */
const LAST_READ_BELOW_BYTES = 4096 - 512;
const READS_BETWEEN_YIELDS = 16;

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
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw unresolvedFromFsError(err, 'no_socket_row', `reading ${path}`);
    }
    try {
      for (let reads = 1; ; reads++) {
        const bytesRead = readSync(fd, buffer, 0, CHUNK_BYTES, null);
        const last = bytesRead < LAST_READ_BELOW_BYTES;
        const row = bytesRead === 0 ? matcher.finish() : matcher.feed(buffer.toString('latin1', 0, bytesRead)) ?? (last ? matcher.finish() : null);
        if (row) return { row, family: needle.family };
        if (last) break;
        if (reads % READS_BETWEEN_YIELDS === 0) await yieldToEventLoop();
      }
    } catch (err) {
      throw unresolvedFromFsError(err, 'no_socket_row', `reading ${path}`);
    } finally {
      closeSync(fd);
    }
  }
  throw new UnresolvedError('no_socket_row', 'no established TCP socket with this 4-tuple in the namespace');
}
