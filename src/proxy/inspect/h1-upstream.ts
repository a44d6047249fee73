// An allowed request sent upstream over HTTP/1.1 (through the connection's keep-alive agent):
// the method, authority and path as decided, the end-to-end fields, and the body framed as the
// client framed it (a length, or chunked), never left to the connection's end.
import type http from 'node:http';
import https from 'node:https';
import type { InspectedConnection } from './connection.js';
import type { OutgoingRequest } from './outgoing.js';

/** `counted.bytesUp` grows with the body as it goes up. */
export function h1Request(conn: InspectedConnection, out: OutgoingRequest, counted: { bytesUp: number }, extra: Record<string, string> = {}): http.ClientRequest {
  const headers: http.OutgoingHttpHeaders = { ...out.headers, ...extra, host: out.authority };
  delete headers['content-length'];
  if (typeof out.length === 'number') headers['content-length'] = String(out.length);
  else if (out.length === 'chunked') headers['transfer-encoding'] = 'chunked';
  const request = https.request({
    agent: conn.upstream.agent(),
    host: conn.tracked.facts.host,
    port: conn.tracked.facts.port,
    method: out.method,
    path: out.path,
    headers,
    setHost: false,
  });
  if (out.length === null) request.end();
  else {
    out.body.on('data', (chunk: Buffer) => (counted.bytesUp += chunk.length));
    out.body.pipe(request);
  }
  return request;
}
