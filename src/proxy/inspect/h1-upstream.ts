// An allowed request sent upstream over HTTP/1.1 (through the proxy's pool of upstream
// connections): the method, authority and path as decided, the end-to-end fields, and the body
// framed as the client framed it (a length, or chunked), never left to the connection's end.
// A request without a body that meets a reset on a pooled connection before any answer (the
// upstream closed it while it was idle) is sent again, on another connection.
import type http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { InspectedConnection } from './connection.js';
import type { OutgoingRequest } from './outgoing.js';

export interface H1Handlers {
  response(answer: http.IncomingMessage): void;
  /** A `101` to an upgrade request: the connection is the caller's from now on. */
  upgrade?(answer: http.IncomingMessage, socket: net.Socket, head: Buffer): void;
  error(err: Error): void;
}

/** What an exchange tells the request's audit record: body bytes sent, and the connection it went on. */
export interface H1Counted {
  bytesUp: number;
  /** The request went on a pooled connection (kept from an earlier exchange). */
  reused?: boolean;
}

/** Times a request is sent again after a reset on a pooled connection it had taken. */
const STALE_RETRIES = 2;

/** Sends the request; returns the function that abandons it (its connection is then closed, never pooled). */
export function h1Exchange(conn: InspectedConnection, out: OutgoingRequest, counted: H1Counted, handlers: H1Handlers, extra: Record<string, string> = {}): () => void {
  const headers: http.OutgoingHttpHeaders = { ...out.headers, ...extra, host: out.authority };
  delete headers['content-length'];
  if (typeof out.length === 'number') headers['content-length'] = String(out.length);
  else if (out.length === 'chunked') headers['transfer-encoding'] = 'chunked';
  let current: http.ClientRequest;
  let abandoned = false;
  const send = (retries: number): void => {
    const { agent, options } = conn.upstream.http1();
    const { host, port } = conn.tracked.facts;
    const request = https.request({ ...options, agent, host, port, method: out.method, path: out.path, headers, setHost: false } as https.RequestOptions);
    current = request;
    let answered = false;
    request.once('socket', (socket: net.Socket) => {
      counted.reused = request.reusedSocket;
      if (socket.remoteAddress) conn.upstream.dialed = socket.remoteAddress;
    });
    request.on('response', (answer: http.IncomingMessage) => {
      answered = true;
      handlers.response(answer);
    });
    if (handlers.upgrade) {
      const upgrade = handlers.upgrade;
      request.on('upgrade', (answer: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        answered = true;
        upgrade(answer, socket, head);
      });
    }
    request.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered && !abandoned && retries > 0 && request.reusedSocket && out.length === null && staleReset(err)) return send(retries - 1);
      handlers.error(err);
    });
    if (out.length === null) request.end();
    else {
      out.body.on('data', (chunk: Buffer) => (counted.bytesUp += chunk.length));
      out.body.pipe(request);
    }
  };
  send(STALE_RETRIES);
  return () => {
    abandoned = true;
    current.destroy();
  };
}

/** A pooled connection the upstream had closed while it was idle. */
function staleReset(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE';
}
