// Idle upstream HTTP/1.1 connections of inspected requests, kept for the next request that may
// use them: an inspected client connection (CONNECT + TLS + one GET + close, as most clients do)
// then costs no new TCP connect and no TLS client handshake to the upstream.
//
// A pooled connection is only ever handed to a request for which everything that made its dial
// legitimate still holds: the same host and port, an address the request's own connection had
// checked (the exact address the pooled connection is connected to), the same upstream trust,
// the same protocol and the same route. The request has been decided (policy, canonical path,
// Host check, credential swap) before any byte of it is written, pooled connection or not.
//
// Node's keep-alive agent does the keeping: a connection goes back to the pool only after an
// exchange whose response framing was complete both ways and which did not say
// `Connection: close`; an error, an aborted or half-read body destroys it. On top of that, this
// pool bounds idle connections per key and in total, ends them after an idle timeout, keeps a
// connection only under the key of the address it really reached, and is cleared on a policy
// reload and on shutdown (connections then in use are closed when their exchange ends).
// HTTP/2 upstream sessions are shared the same way (SharedH2Sessions), by the same key.
import type http from 'node:http';
import type http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { canonicalAddress } from '../../net/address.js';
import type { UpstreamTrust } from '../../tls/upstream.js';

/** Everything that made an upstream dial legitimate: a pooled connection serves only the same. */
export interface PoolKeyParts {
  host: string;
  port: number;
  /** The checked address the connection is connected to. */
  address: string;
  trust: UpstreamTrust;
  /** The protocol spoken on the connection (its ALPN). */
  alpn: string;
  /** How the upstream is reached: `direct`, or the upstream proxy's name. */
  route: string;
}

/** A request's view of the pool: its connection's host, port, checked addresses, trust, protocol and route. */
export type PoolTarget = Omit<PoolKeyParts, 'address'> & { addresses: readonly string[] };

export interface PoolLimits {
  /** Idle connections kept per key. */
  maxIdlePerKey: number;
  /** Idle connections kept in all. */
  maxIdleTotal: number;
  /** An idle connection is closed after this long (or sooner, when the upstream's Keep-Alive says so). */
  idleTimeoutMs: number;
  /** Keys remembered at once (the least recently used is dropped, its idle connections closed). */
  maxKeys: number;
}

export const DEFAULT_POOL_LIMITS: PoolLimits = { maxIdlePerKey: 32, maxIdleTotal: 256, idleTimeoutMs: 15_000, maxKeys: 1024 };

/** Request options an agent of this pool reads: how to dial a new connection for the request. */
export interface PooledRequestOptions {
  dialUpstream: () => Promise<tls.TLSSocket>;
}

const trustIds = new WeakMap<UpstreamTrust, number>();
let nextTrustId = 1;

/** One number per trust object: two trusts never share a key, however alike they look. */
function trustId(trust: UpstreamTrust): number {
  let id = trustIds.get(trust);
  if (id === undefined) trustIds.set(trust, (id = nextTrustId++));
  return id;
}

/** The key of a connection: equal keys, and only those, may serve each other's requests. */
export function poolKey(parts: PoolKeyParts): string {
  const address = canonicalAddress(parts.address) ?? parts.address;
  return [trustId(parts.trust), parts.route, parts.alpn, parts.host, parts.port, address].join('\0');
}

/** A key a request may take a pooled connection under, and the checked address it names. */
export interface PoolCandidate {
  key: string;
  address: string;
}

/** The keys a request may take a pooled connection under: one per checked address, in the checked order. */
export function candidateKeys(target: PoolTarget): PoolCandidate[] {
  return target.addresses.map((address) => ({ key: poolKey({ ...target, address }), address }));
}

/** Whether a connection dialed for `address` really reached it (a dial may fall over to the next checked address). */
export function reachedAddress(address: string, remoteAddress: string | undefined): boolean {
  if (remoteAddress === undefined) return false;
  return (canonicalAddress(remoteAddress) ?? remoteAddress) === (canonicalAddress(address) ?? address);
}

/** One key's keep-alive agent: its new connections are dialed by the request's own connection. */
export class PooledAgent extends https.Agent {
  private retired = false;

  constructor(
    private readonly pool: UpstreamPool,
    readonly address: string,
    limits: PoolLimits,
  ) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: limits.maxIdlePerKey, timeout: limits.idleTimeoutMs, scheduling: 'lifo' });
  }

  // The agent asks for a connection with a callback: dial the checked addresses, never its own lookup.
  override createConnection(options: http.RequestOptions, done?: (err: Error | null, stream: Duplex) => void): undefined {
    (options as unknown as PooledRequestOptions).dialUpstream().then(
      (socket) => done?.(null, socket),
      (err: Error) => done?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }

  // Called when an exchange ended cleanly and the agent would keep its connection.
  override keepSocketAlive(socket: net.Socket): boolean {
    if (this.retired || !reachedAddress(this.address, socket.remoteAddress)) return false;
    if (this.pool.idleCount() >= this.pool.limits.maxIdleTotal) return false;
    // Node's typings say void; it answers whether the socket may be kept (a Keep-Alive hint may say no).
    return (super.keepSocketAlive(socket) as unknown as boolean | undefined) !== false;
  }

  // A connection taken from the pool is busy again: its idle timer goes (it would be refreshed on every read).
  override reuseSocket(socket: net.Socket, request: http.ClientRequest): void {
    socket.setTimeout(0);
    super.reuseSocket(socket, request);
  }

  idleCount(): number {
    let n = 0;
    for (const list of Object.values(this.freeSockets)) n += list?.length ?? 0;
    return n;
  }

  /** No connection of this agent is kept any more; idle ones close now, busy ones when their exchange ends. */
  retire(): void {
    this.retired = true;
    for (const list of Object.values(this.freeSockets)) for (const socket of list ?? []) socket.destroy();
  }
}

/**
 * Upstream HTTP/2 sessions shared by the inspected HTTP/2 clients of one host: a session serves
 * the requests of every client connection that checked the address it is connected to (with the
 * same trust and route). It closes after the idle timeout, and when the pool is cleared.
 */
export class SharedH2Sessions {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly limits: PoolLimits) {}

  /** A live shared session under one of the keys (candidateKeys) of a connection. */
  find(candidates: readonly PoolCandidate[]): http2.ClientHttp2Session | undefined {
    for (const { key } of candidates) {
      const session = this.sessions.get(key);
      if (session && !session.closed && !session.destroyed) return session;
    }
    return undefined;
  }

  /**
   * Shares `session`, connected to `remoteAddress`, under its key among a connection's
   * candidates. False (the caller keeps it to itself) when that address was not checked for the
   * connection, one is shared there already, or the bound is reached.
   */
  share(candidates: readonly PoolCandidate[], remoteAddress: string | undefined, session: http2.ClientHttp2Session): boolean {
    const reached = candidates.find((c) => reachedAddress(c.address, remoteAddress));
    if (reached === undefined || this.sessions.size >= this.limits.maxIdleTotal) return false;
    const { key } = reached;
    if (this.find([reached])) return false;
    this.sessions.set(key, session);
    const forget = (): void => {
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    };
    session.once('close', forget);
    session.once('goaway', forget);
    session.setTimeout(this.limits.idleTimeoutMs, () => session.close());
    return true;
  }

  /** No session is handed out any more; each closes once its open streams end. */
  clear(): void {
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }
}

export class UpstreamPool {
  /** By key, least recently used first. */
  private readonly agents = new Map<string, PooledAgent>();
  readonly h2: SharedH2Sessions;

  constructor(readonly limits: PoolLimits = DEFAULT_POOL_LIMITS) {
    this.h2 = new SharedH2Sessions(limits);
  }

  /**
   * The agent for a request of a connection with these candidates (candidateKeys): the first
   * checked address's key that holds an idle connection, else the first checked address's (a
   * new connection is dialed for the request).
   */
  agentFor(candidates: readonly PoolCandidate[]): PooledAgent {
    if (candidates.length === 0) return this.unpooled();
    const chosen = candidates.find((c) => (this.agents.get(c.key)?.idleCount() ?? 0) > 0) ?? candidates[0]!;
    let agent = this.agents.get(chosen.key);
    if (agent) this.agents.delete(chosen.key);
    else agent = new PooledAgent(this, chosen.address, this.limits);
    this.agents.set(chosen.key, agent);
    if (this.agents.size > this.limits.maxKeys) this.drop(this.agents.keys().next().value as string);
    return agent;
  }

  /** An agent that keeps nothing: each request dials its own connection, closed after it. */
  unpooled(): PooledAgent {
    const agent = new PooledAgent(this, '', this.limits);
    agent.retire();
    return agent;
  }

  idleCount(): number {
    let n = 0;
    for (const agent of this.agents.values()) n += agent.idleCount();
    return n;
  }

  /** Closes every idle connection and shared session, and forgets every key (a policy reload, shutdown). */
  clear(): void {
    for (const key of [...this.agents.keys()]) this.drop(key);
    this.h2.clear();
  }

  private drop(key: string): void {
    this.agents.get(key)?.retire();
    this.agents.delete(key);
  }
}
