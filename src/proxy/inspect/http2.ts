// HTTP/2 on an inspected connection: Node's HTTP/2 server session over the client's TLS socket
// (nghttp2 does the framing and its checks). Every stream is decided by `:method`, `:path` and
// `:authority` (decide.ts); a refused stream gets its answer on that stream alone (a stream for
// another host — connection coalescing — gets 421), the connection's other streams go on.
// Allowed streams go upstream over one HTTP/2 session when the upstream offers h2 (trailers and
// long-lived streams end to end: gRPC), or over HTTP/1.1 otherwise.
import http2 from 'node:http2';
import type http from 'node:http';
import type tls from 'node:tls';
import { authorityOf, type InspectedConnection } from './connection.js';
import { decideRequest, type RequestVerdict } from './decide.js';
import { h1Exchange } from './h1-upstream.js';
import { endToEndHeaders, flattenHeaders, rewriteOutgoing, type OutgoingRequest } from './outgoing.js';
import { refuseOnStream, upstreamRefusal } from './refuse.js';
import { recordRequest, type RequestRecord } from './request-audit.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;

type Allowed = RequestVerdict & { ok: true };

export function serveHttp2(conn: InspectedConnection, socket: tls.TLSSocket): http2.ServerHttp2Session {
  // A server-side TLSSocket made by hand (not by tls.Server) keeps secureConnecting true after
  // its handshake, and the session would wait for a 'secureConnect' that never comes.
  (socket as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
  const session = http2.performServerHandshake(socket, { settings: { enablePush: false } });
  session.on('error', () => session.destroy());
  session.on('stream', (stream, headers, flags) => serveStream(conn, stream, headers, flags));
  return session;
}

function serveStream(conn: InspectedConnection, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
  stream.on('error', () => stream.destroy());
  const method = headers[':method'] ?? '';
  // A CONNECT stream has no :path: refused as a request without a canonical path.
  const verdict = decideRequest(conn, { method, target: headers[':path'] ?? '', authority: headers[':authority'] ?? headers.host });
  const { record, done } = recordRequest(conn, verdict);
  stream.once('close', done);
  if (!verdict.ok) return refuseOnStream(stream, verdict.refusal, record);
  const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
  const declared = headers['content-length'];
  const length = ended ? null : declared !== undefined ? Number(declared) : 'chunked';
  void rewriteOutgoing(conn, verdict, { method, authority: authorityOf(conn), path: verdict.facts.path, headers: endToEndHeaders(flattenHeaders(headers), true), body: stream, length }).then((out) => {
    if (stream.destroyed) return;
    if (!out.ok) {
      record.error = out.error;
      return refuseOnStream(stream, out.refusal, record);
    }
    conn.upstream.h2Session().then(
      (session) => {
        if (!session) return viaH1(conn, stream, out.request, verdict, record);
        record.reused = conn.upstream.madeElsewhere(session);
        viaH2(conn, session, stream, out.request, ended, verdict, record);
      },
      (err: unknown) => upstreamFailed(conn, stream, err, verdict, record),
    );
  });
}

function upstreamFailed(conn: InspectedConnection, stream: http2.ServerHttp2Stream, err: unknown, verdict: Allowed, record: RequestRecord): void {
  refuseOnStream(stream, upstreamRefusal(conn, err, verdict.decision.policy, record), record);
}

function viaH2(conn: InspectedConnection, session: http2.ClientHttp2Session, stream: http2.ServerHttp2Stream, out: OutgoingRequest, ended: boolean, verdict: Allowed, record: RequestRecord): void {
  if (stream.destroyed) return;
  const request = { ...out.headers, ':method': out.method, ':scheme': 'https', ':authority': out.authority, ':path': out.path };
  let upstream: http2.ClientHttp2Stream;
  try {
    upstream = session.request(request, ended ? { endStream: true } : { waitForTrailers: true });
  } catch (err) {
    return upstreamFailed(conn, stream, err, verdict, record);
  }
  // Trailers both ways: the client's go up after its last DATA frame, the upstream's come down.
  let clientTrailers: http2.OutgoingHttpHeaders = {};
  stream.on('trailers', (t: http2.IncomingHttpHeaders) => (clientTrailers = endToEndHeaders(flattenHeaders(t))));
  upstream.on('wantTrailers', () => guarded(stream, () => upstream.sendTrailers(clientTrailers)));
  if (!ended) pipeCounted(out, upstream, record);
  let upstreamTrailers: http2.OutgoingHttpHeaders = {};
  upstream.on('trailers', (t: http2.IncomingHttpHeaders) => (upstreamTrailers = endToEndHeaders(flattenHeaders(t))));
  stream.on('wantTrailers', () => guarded(stream, () => stream.sendTrailers(upstreamTrailers)));
  upstream.on('response', (headers: http2.IncomingHttpHeaders, flags: number) => {
    record.status = Number(headers[':status'] ?? 0);
    if (stream.destroyed) return;
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const answered = guarded(stream, () => stream.respond({ ...endToEndHeaders(flattenHeaders(headers)), ':status': record.status }, endStream ? { endStream: true } : { waitForTrailers: true }));
    upstream.on('data', (chunk: Buffer) => (record.bytesDown += chunk.length));
    if (answered && !endStream) upstream.pipe(stream);
  });
  upstream.on('error', (err) => (stream.headersSent ? stream.close(NGHTTP2_INTERNAL_ERROR) : upstreamFailed(conn, stream, err, verdict, record)));
  // A reset either way is passed on (a cancelled gRPC call cancels upstream).
  upstream.once('close', () => {
    if (!stream.closed && upstream.rstCode !== undefined && upstream.rstCode !== 0) stream.close(upstream.rstCode);
  });
  stream.once('close', () => {
    if (!upstream.closed) upstream.close(stream.rstCode !== undefined && stream.rstCode !== 0 ? stream.rstCode : NGHTTP2_CANCEL);
  });
}

/**
 * Passes on headers or trailers the upstream sent; ones HTTP/2 cannot carry (Node throws on
 * them) reset this stream instead of reaching the proxy's event loop. False when they failed.
 */
function guarded(stream: http2.ServerHttp2Stream, pass: () => void): boolean {
  try {
    pass();
    return true;
  } catch {
    if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
    return false;
  }
}

/** The request body upstream, counted; attached only now, so nothing flows before it has somewhere to go. */
function pipeCounted(out: OutgoingRequest, upstream: NodeJS.WritableStream, record: RequestRecord): void {
  out.body.on('data', (chunk: Buffer) => (record.bytesUp += chunk.length));
  out.body.pipe(upstream);
}

function viaH1(conn: InspectedConnection, stream: http2.ServerHttp2Stream, out: OutgoingRequest, verdict: Allowed, record: RequestRecord): void {
  if (stream.destroyed) return;
  const abandon = h1Exchange(conn, out, record, {
    response(answer: http.IncomingMessage) {
      record.status = answer.statusCode ?? 0;
      if (stream.destroyed) return;
      if (!guarded(stream, () => stream.respond({ ...endToEndHeaders(answer.rawHeaders), ':status': record.status }, { waitForTrailers: true }))) return;
      stream.on('wantTrailers', () => guarded(stream, () => stream.sendTrailers(endToEndHeaders(answer.rawTrailers))));
      answer.on('data', (chunk: Buffer) => (record.bytesDown += chunk.length));
      answer.pipe(stream);
    },
    error: (err) => upstreamFailed(conn, stream, err, verdict, record),
  });
  // After a whole exchange this is a no-op (its connection is back in the pool); before, it closes that connection.
  stream.once('close', abandon);
}
