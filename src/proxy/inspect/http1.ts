// HTTP/1.1 on an inspected connection. Node's HTTP server parses the client's requests (llhttp,
// strict: no obs-fold, no bare LF, no Content-Length with Transfer-Encoding, no duplicate
// lengths), so each request is framed once, by one parser; every request is then decided on
// its own (decide.ts), refused on that request alone or forwarded (h1-upstream.ts), with
// keep-alive between them. One server per proxy, never listening: connections are handed to it.
import http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Pipeline } from '../pipeline.js';
import { RELAY_HIGH_WATER_MARK } from '../relay.js';
import { authorityOf, type InspectedConnection } from './connection.js';
import { decideRequest, type RequestVerdict } from './decide.js';
import { h1Exchange } from './h1-upstream.js';
import { endToEndHeaders, rewriteOutgoing, type OutgoingRequest } from './outgoing.js';
import { refuseOnResponse, upstreamRefusal } from './refuse.js';
import { recordRequest, type RequestRecord } from './request-audit.js';
import { serveUpgrade } from './websocket.js';

const servers = new WeakMap<Pipeline, http.Server>();
const connections = new WeakMap<net.Socket, InspectedConnection>();

/** Hands a TLS socket (ALPN http/1.1 or none) to the proxy's HTTP/1.1 server. */
export function serveHttp1(conn: InspectedConnection, socket: tls.TLSSocket): void {
  connections.set(socket, conn);
  serverFor(conn.p).emit('connection', socket);
}

function serverFor(p: Pipeline): http.Server {
  let server = servers.get(p);
  if (server) return server;
  server = http.createServer({
    maxHeaderSize: p.limits.maxHeaderBytes,
    // Request and response bodies stream in large writes (as the TLS sockets under them do).
    highWaterMark: RELAY_HIGH_WATER_MARK,
    // A long upload or a slow stream is bounded by the idle timeout, not by a total.
    requestTimeout: 0,
    headersTimeout: p.limits.headerTimeoutMs,
    keepAliveTimeout: 30_000,
    requireHostHeader: true,
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const conn = connections.get(req.socket);
    if (conn) serveRequest(conn, req, res);
    else res.destroy();
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const conn = connections.get(socket);
    if (conn) serveUpgrade(conn, req, socket, head, askedOf(req));
    else socket.destroy();
  });
  server.on('connect', (_req: http.IncomingMessage, socket: net.Socket) => socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const conn = connections.get(socket);
    conn?.p.error({ kind: 'error', error: 'bad_request', detail: `malformed HTTP/1.1 on an inspected connection: ${err.code ?? err.message}`, host: conn.tracked.facts.host, port: conn.tracked.facts.port, tls: true, client: conn.peer });
    if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    socket.destroy();
  });
  servers.set(p, server);
  return server;
}

/** What the request asks for: a second Host field is an authority of its own, so it is refused. */
function askedOf(req: http.IncomingMessage): { method: string; target: string; authority: string | undefined } {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  return { method: req.method ?? '', target: req.url ?? '', authority: hosts === 1 ? req.headers.host : undefined };
}

function serveRequest(conn: InspectedConnection, req: http.IncomingMessage, res: http.ServerResponse): void {
  const verdict = decideRequest(conn, askedOf(req));
  const { record, done } = recordRequest(conn, verdict);
  res.once('close', done);
  if (!verdict.ok) return refuseOnResponse(res, verdict.refusal, record);
  const asked = { method: verdict.facts.method, authority: authorityOf(conn), path: verdict.facts.path, headers: endToEndHeaders(req.rawHeaders), body: req, length: bodyLength(req) };
  void rewriteOutgoing(conn, verdict, asked).then((out) => {
    if (res.destroyed) return;
    if (!out.ok) {
      record.error = out.error;
      return refuseOnResponse(res, out.refusal, record);
    }
    forward(conn, out.request, res, verdict, record);
  });
}

function bodyLength(req: http.IncomingMessage): number | 'chunked' | null {
  if (req.headers['transfer-encoding'] !== undefined) return 'chunked';
  const length = req.headers['content-length'];
  return length === undefined ? null : Number(length);
}

function forward(conn: InspectedConnection, out: OutgoingRequest, res: http.ServerResponse, verdict: RequestVerdict & { ok: true }, record: RequestRecord): void {
  const abandon = h1Exchange(conn, out, record, {
    response(answer: http.IncomingMessage) {
      record.status = answer.statusCode ?? 0;
      try {
        res.writeHead(record.status, answer.statusMessage, endToEndHeaders(answer.rawHeaders));
      } catch {
        // A head Node will not write (an informational status here): this exchange fails alone.
        answer.destroy();
        res.destroy();
        return;
      }
      answer.on('data', (chunk: Buffer) => (record.bytesDown += chunk.length));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    },
    error(err) {
      refuseOnResponse(res, upstreamRefusal(conn, err, verdict.decision.policy, record), record);
    },
  });
  // The client went before the whole answer reached it: the upstream connection is closed, never pooled half-read.
  res.once('close', () => {
    if (!res.writableFinished) abandon();
  });
}
