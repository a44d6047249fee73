// TLS inspection of an allowed connection (CONNECT after its 200, or the SNI listener after its
// ClientHello peek, the peeked bytes replayed): the proxy ends the client's TLS itself with a
// leaf for the host the connection was decided for, and serves what the client speaks by ALPN
// (h2 → http2.ts, http/1.1 → http1.ts), deciding every request on it.
//   - The ClientHello's server name must name that host (a CONNECT to one host carrying a
//     hello for another is refused, audited); without one, the CONNECT host is used.
//   - A client that refuses the leaf (it pins its certificates, or does not trust the CA) ends
//     the handshake: audited as `tls_client_rejected` with its alert, so an operator can give
//     that endpoint `tls: passthrough`.
import type net from 'node:net';
import tls from 'node:tls';
import { callerFields, peerOf } from '../caller.js';
import type { Allowed, Pipeline } from '../pipeline.js';
import { RELAY_HIGH_WATER_MARK, type CloseCause } from '../relay.js';
import { parseHost } from '../target.js';
import type { InspectedConnection } from './connection.js';
import { serveHttp1 } from './http1.js';
import { serveHttp2 } from './http2.js';
import { UpstreamLink } from './upstream.js';

/** Terminates the client's TLS on `client` (its first bytes in `replay`) and serves its requests. */
export async function inspectConnection(p: Pipeline, allowed: Allowed, replay: Buffer): Promise<void> {
  const inspection = p.inspection!;
  const { client, facts } = allowed;
  const tracked = p.acceptInspected(allowed);
  const failed = (error: string, detail: string, extra: Record<string, unknown> = {}): void =>
    p.error({ kind: 'error', error, detail, host: facts.host, port: facts.port, via: allowed.kind, ...callerFields(allowed.identity), client: peerOf(client), ...extra });
  let leaf;
  try {
    leaf = await inspection.leaves.get(facts.host);
  } catch (err) {
    failed('tls_leaf_failed', `no leaf certificate for ${facts.host}: ${(err as Error).message}`);
    client.destroy();
    return;
  }
  if (client.destroyed) return;
  if (replay.length > 0) client.unshift(replay);
  let sniRefused: string | null = null;
  const socket = new tls.TLSSocket(client, {
    isServer: true,
    // Body bytes pass through in large writes: with the default 16 KiB every TLS record's worth
    // would fill the buffer, pause the upstream read and wait for a drain. (It reaches the
    // socket's Duplex options; the typings of TLSSocket omit it.)
    highWaterMark: RELAY_HIGH_WATER_MARK,
    secureContext: leaf.context,
    ALPNProtocols: ['h2', 'http/1.1'],
    SNICallback: (servername, done) => {
      const named = parseHost(servername);
      if (named.ok && named.host === facts.host) return done(null, leaf.context);
      sniRefused = servername;
      done(new Error(`the TLS server name "${servername}" is not the host this connection was decided for (${facts.host})`));
    },
  } as tls.TLSSocketOptions);
  const upstream = new UpstreamLink({ host: facts.host, port: facts.port, addresses: allowed.addresses, connectTimeoutMs: p.limits.connectTimeoutMs, trust: inspection.upstream, pool: p.upstreamPool, route: p.routeFor(facts) });
  const conn: InspectedConnection = { p, tracked, client, peer: peerOf(client), alpn: '', upstream };

  let secure = false;
  let reported = false;
  const handshakeTimer = setTimeout(() => socket.destroy(), p.limits.helloTimeoutMs);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!secure && !reported) handshakeFailed(p, allowed, sniRefused, err, failed);
    reported = true;
    socket.destroy();
  });
  const end = p.tunnels.add(tracked, (cause) => stop(cause));
  let cause: CloseCause = 'finished';
  const stop = (why: CloseCause): void => {
    cause = why;
    socket.destroy();
    client.destroy();
  };
  client.once('close', () => {
    clearTimeout(handshakeTimer);
    if (!secure && !reported) {
      reported = true;
      handshakeFailed(p, allowed, sniRefused, Object.assign(new Error('the connection closed during the TLS handshake'), { code: 'ECONNRESET' }), failed);
    }
    upstream.close();
    tracked.dialed = upstream.dialed;
    end(cause, { bytesUp: client.bytesRead, bytesDown: client.bytesWritten });
  });
  socket.once('secure', () => {
    secure = true;
    clearTimeout(handshakeTimer);
    conn.alpn = socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
    tracked.inspected = { alpn: conn.alpn };
    // The HTTP/2 session reads the socket's handle itself (the socket sees no traffic): its own
    // timer, which every frame resets, is the one that tells idle from busy.
    if (conn.alpn === 'h2') serveHttp2(conn, socket).setTimeout(p.limits.idleTimeoutMs, () => stop('idle'));
    else {
      socket.setTimeout(p.limits.idleTimeoutMs, () => stop('idle'));
      serveHttp1(conn, socket);
    }
  });
  // No client.resume(): it would hand the replayed bytes to 'data' listeners instead of to the
  // TLS socket, which reads the client's buffered bytes and its handle by itself.
}

function handshakeFailed(p: Pipeline, allowed: Allowed, sniRefused: string | null, err: NodeJS.ErrnoException, failed: (error: string, detail: string, extra?: Record<string, unknown>) => void): void {
  const { facts } = allowed;
  if (sniRefused !== null) {
    p.countRefusal();
    p.emit({
      kind: allowed.kind,
      allow: false,
      decision: 'deny',
      reason: `the TLS server name "${sniRefused}" is not ${facts.host}, the host this connection was decided for`,
      policy: allowed.decision.policy,
      host: facts.host,
      port: facts.port,
      server_name: sniRefused,
      ...callerFields(allowed.identity),
      client: peerOf(allowed.client),
      error: 'sni_mismatch',
    });
    return;
  }
  const alert = /alert ([a-z ]+)/i.exec(err.message)?.[1];
  failed('tls_client_rejected', `the client ended the TLS handshake (${err.code ?? err.message}): it does not accept the proxy's certificate for ${facts.host} (it pins certificates, or does not trust the inspection CA); if it pins, give this endpoint tls: passthrough`, {
    ...(alert ? { alert } : {}),
    tls_error_code: err.code ?? null,
  });
}
