// One TLS-inspected connection, as its requests see it: who is calling, the host and port the
// connection was decided for (every request must name that host), the addresses that decision
// checked (the only ones dialed), and the link to the upstream its requests share.
import type net from 'node:net';
import type { Pipeline } from '../pipeline.js';
import type { Tracked } from '../tunnels.js';
import type { UpstreamLink } from './upstream.js';

export interface InspectedConnection {
  p: Pipeline;
  /** Identity, facts (host, port) and checked addresses; `inspected.alpn` once negotiated. */
  tracked: Tracked;
  /** The client's TCP socket (under the TLS session). */
  client: net.Socket;
  /** `address:port` of the client, as audit events name it. */
  peer: string;
  /** The protocol the client chose by ALPN: `h2` or `http/1.1`. */
  alpn: string;
  upstream: UpstreamLink;
}

/** `host[:port]` as a request names it, for this connection's host and port. */
export function authorityOf(conn: InspectedConnection): string {
  const { host, port, ip } = conn.tracked.facts;
  const hostText = ip && host.includes(':') ? `[${host}]` : host;
  return port === 443 ? hostText : `${hostText}:${port}`;
}
