// The upstream side of an inspected connection: TLS re-originated to exactly the checked
// addresses (dialer.ts), verified against the system's roots plus --upstream-ca (UpstreamTrust),
// SNI = the host. HTTP/1.1 requests go through the proxy's pool of idle upstream connections
// (upstream-pool.ts: a new one is dialed that way when none fits); an HTTP/2 client's requests
// go on an HTTP/2 session the pool shares (or one dialed that way) when the upstream offers h2.
import http2 from 'node:http2';
import tls from 'node:tls';
import { classifyUpstreamTlsError, type UpstreamTrust } from '../../tls/upstream.js';
import { dialRoute } from '../dialer.js';
import { upstreamProxyName, type Route } from '../upstream-proxy.js';
import { RELAY_HIGH_WATER_MARK } from '../relay.js';
import type { ProxyErrorKind } from '../responses.js';
import { candidateKeys, type PoolCandidate, type PooledAgent, type PooledRequestOptions, type UpstreamPool } from './upstream-pool.js';

/** Why an upstream could not be reached: answered to the client as its `kind` says. */
export class UpstreamFailure extends Error {
  constructor(
    readonly kind: ProxyErrorKind,
    detail: string,
    /** OpenSSL's (or Node's) code for a TLS failure. */
    readonly code?: string,
  ) {
    super(detail);
  }
}

export interface UpstreamTarget {
  host: string;
  port: number;
  addresses: string[];
  connectTimeoutMs: number;
  trust: UpstreamTrust;
  /** The proxy's idle upstream connections (HTTP/1.1). */
  pool: UpstreamPool;
  /** Direct, or through the upstream proxy's CONNECT (the TLS to the upstream goes inside it). */
  route: Route;
}

/** The route as a pool key names it. */
function routeName(route: Route): string {
  return route.via === 'direct' ? 'direct' : `upstream_proxy ${upstreamProxyName(route.proxy)}`;
}

/**
 * TLS sessions to upstreams, per trust (one per proxy), by host, port and ALPN offer: a resumed
 * session skips building and checking the certificate chain again (a tenth of an inspected
 * connection's CPU). A session is only ever offered to the host it was verified for.
 */
const sessionCaches = new WeakMap<UpstreamTrust, Map<string, Buffer>>();
const MAX_SESSIONS = 1000;

function sessionsFor(trust: UpstreamTrust): Map<string, Buffer> {
  let cache = sessionCaches.get(trust);
  if (!cache) sessionCaches.set(trust, (cache = new Map()));
  return cache;
}

export class UpstreamLink {
  private session: Promise<http2.ClientHttp2Session | null> | undefined;
  /** The session `session` resolved to; `ownsSession`: this connection's alone (not shared). */
  private live: http2.ClientHttp2Session | undefined;
  private ownsSession = false;
  private readonly keys = new Map<string, readonly PoolCandidate[]>();
  /** A connection dialed for h2 that came back HTTP/1.1: the agent's first connection. */
  private spare: tls.TLSSocket | undefined;
  /** The address the last connection went to (for the audit). */
  dialed = '';
  private closed = false;
  /** The upstream proxy the connections go through (`host:port`, for the audit), if any. */
  readonly upstreamProxy: string | undefined;

  constructor(private readonly target: UpstreamTarget) {
    this.upstreamProxy = target.route.via === 'upstream_proxy' ? upstreamProxyName(target.route.proxy) : undefined;
  }

  /** A verified TLS connection offering `alpn`; rejects with UpstreamFailure. */
  async connect(alpn: string[]): Promise<tls.TLSSocket> {
    const { host, port, addresses, connectTimeoutMs, trust, route } = this.target;
    const dialed = await dialRoute(route, { host, port, addresses }, 'tunnel', connectTimeoutMs);
    if (!('socket' in dialed)) throw new UpstreamFailure(dialed.kind, dialed.detail);
    const socket = dialed.socket;
    this.dialed = socket.remoteAddress ?? '';
    const sessions = sessionsFor(trust);
    const key = `${host}\0${port}\0${alpn.join(',')}`;
    return new Promise((resolve, reject) => {
      // highWaterMark reaches the socket's Duplex options (the typings of tls.connect omit it).
      const options = { ...trust.connectOptions(host), socket, ALPNProtocols: alpn, session: sessions.get(key), highWaterMark: RELAY_HIGH_WATER_MARK };
      const secure = tls.connect(options as tls.ConnectionOptions);
      // Kept only once the upstream's certificate was verified (a TLS 1.2 session arrives before
      // that check): resuming an unverified session would skip verification altogether.
      let verified = false;
      let pending: Buffer | undefined;
      const keep = (session: Buffer): void => {
        sessions.delete(key);
        sessions.set(key, session);
        if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
      };
      secure.on('session', (session: Buffer) => (verified ? keep(session) : (pending = session)));
      secure.once('secureConnect', () => {
        verified = true;
        if (pending) keep(pending);
      });
      const timer = setTimeout(() => secure.destroy(new UpstreamFailure('upstream_timeout', `no TLS handshake with ${host} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        secure.removeAllListeners('error');
        secure.on('error', () => secure.destroy());
        resolve(secure);
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(asFailure(err, host));
      });
    });
  }

  /**
   * How an HTTP/1.1 request of this connection reaches the upstream: the pool's agent for its
   * key (an idle connection to one of this connection's checked addresses, or a new one dialed
   * by connect()), and the options that make the agent dial that way.
   */
  http1(): { agent: PooledAgent; options: PooledRequestOptions } {
    const agent = this.target.pool.agentFor(this.candidates('http/1.1'));
    return { agent, options: { dialUpstream: () => this.dialHttp1() } };
  }

  private dialHttp1(): Promise<tls.TLSSocket> {
    const spare = this.spare;
    this.spare = undefined;
    if (spare && !spare.destroyed) return Promise.resolve(spare);
    return this.connect(['http/1.1']);
  }

  /**
   * For an HTTP/2 client: an upstream HTTP/2 session (one shared with other inspected
   * connections to a checked address of this one, or this connection's own, shared once made),
   * or null when the upstream speaks HTTP/1.1 only.
   */
  h2Session(): Promise<http2.ClientHttp2Session | null> {
    const shared = this.target.pool.h2.find(this.candidates('h2'));
    if (shared) {
      this.dialed = shared.socket.remoteAddress ?? this.dialed;
      return Promise.resolve(shared);
    }
    // A session that was closed (the pool was cleared, the upstream went away) is dialed again.
    if (this.live && (this.live.closed || this.live.destroyed)) this.session = this.live = undefined;
    this.session ??= this.connect(['h2', 'http/1.1']).then((socket) => {
      if (socket.alpnProtocol !== 'h2') {
        this.spare = socket;
        return null;
      }
      const session = http2.connect(`https://${this.target.host}`, { createConnection: () => socket });
      session.on('error', () => session.destroy());
      session.once('close', () => {
        if (this.live === session) this.session = this.live = undefined;
      });
      this.live = session;
      this.ownsSession = !this.target.pool.h2.share(this.candidates('h2'), socket.remoteAddress, session);
      if (this.closed && this.ownsSession) session.destroy();
      return session;
    });
    // A failure is answered to the request that met it; the next one tries again.
    this.session.catch(() => (this.session = undefined));
    return this.session;
  }

  /** Whether `session` came from the pool, made for another connection (the audit's `upstream_reused`). */
  madeElsewhere(session: http2.ClientHttp2Session): boolean {
    return session !== this.live;
  }

  /** This connection's pool keys for a protocol, made once (its host, addresses and trust do not change). */
  private candidates(alpn: 'h2' | 'http/1.1'): readonly PoolCandidate[] {
    let keys = this.keys.get(alpn);
    if (!keys) {
      const { host, port, addresses, trust, route } = this.target;
      this.keys.set(alpn, (keys = candidateKeys({ host, port, addresses, trust, alpn, route: routeName(route) })));
    }
    return keys;
  }

  close(): void {
    this.closed = true;
    this.spare?.destroy();
    // A shared session goes on serving the other connections (its idle timeout ends it).
    if (this.ownsSession) this.live?.destroy();
  }
}

/** Any error met on the way to the upstream, as the failure the client is told about. */
export function asFailure(err: unknown, host: string): UpstreamFailure {
  if (err instanceof UpstreamFailure) return err;
  const tlsError = classifyUpstreamTlsError(err, host);
  if (tlsError) return new UpstreamFailure('upstream_tls_error', tlsError.detail, tlsError.code);
  const e = err as NodeJS.ErrnoException;
  return new UpstreamFailure('upstream_unreachable', `${host}: ${e.code ?? e.message}`);
}
