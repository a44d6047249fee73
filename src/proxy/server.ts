// The egress proxy service: an HTTP listener (CONNECT and forward HTTP) and an optional
// transparent SNI listener, deciding per connection who is calling and whether it may go.
// No process-global side effects (signals, file watching): the CLI adds those.
import net from 'node:net';
import os from 'node:os';
import type { AuditEvent } from '../audit/events.js';
import type { AuditFailureMode, AuditSink } from '../audit/sink.js';
import { PolicyEngine } from '../engine/engine.js';
import { portcullisCacheDir } from '../util/cache-dir.js';
import { IdentityResolver } from '../identity/resolver.js';
import type { ConnectionTuple, ProcessIdentity, ResolveOptions } from '../identity/types.js';
import { loadPolicyFile } from '../policy/load.js';
import { UNRESOLVED } from '../policy/types.js';
import { authorise, decisionInputFor, type AuthoriseContext, type RequestFacts } from './authorise.js';
import { parseClientHello } from './client-hello.js';
import { ChunkedBodyScanner } from './chunked.js';
import { headerValues, parseRequestHead, requestBodyFraming, type BodyFraming, type RequestHead } from './http-head.js';
import { resolveLimits, type ProxyLimits } from './limits.js';
import { Relay, type CloseCause, type RelayStats } from './relay.js';
import { Downstream } from './downstream.js';
import { admissionRefusal, CONNECT_ESTABLISHED, errorResponse, statusOf, type AdmissionRefusal, type ProxyErrorKind } from './responses.js';
import { canonicalAddress } from './ssrf.js';
import { parseAbsoluteTarget, parseConnectTarget, parseHost } from './target.js';
import { createUpstreamLookup } from './upstream-dns.js';

export interface HostPort {
  host: string;
  port: number;
}

/** A dialed upstream: the socket, the checked addresses, the one that answered. */
interface Dialed {
  upstream: net.Socket;
  addresses: string[];
  dialed: string;
  /** For tunnels: how the upstream's bytes reach the client. */
  downstream: Downstream | undefined;
}

export interface IdentitySource {
  resolve(tuple: ConnectionTuple, options?: ResolveOptions): Promise<ProcessIdentity>;
  /** The connection asked about has closed (a hint for the next lookup; optional). */
  released?(tuple: ConnectionTuple, options?: ResolveOptions): void;
  /** Prepares for the first lookup; called once when the proxy is listening (optional). */
  warm?(): Promise<void>;
}

export interface ProxyOptions {
  policyFile: string;
  engine?: PolicyEngine;
  listen: HostPort;
  sniListen?: HostPort;
  audit: AuditSink;
  /** While the audit cannot be written: refuse new connections (closed, the default) or serve them. */
  auditFailure?: AuditFailureMode;
  resolver?: HostPort;
  reportOnly?: boolean;
  anchorPid?: number;
  limits?: Partial<ProxyLimits>;
  regoDirs?: string[];
  /** Who is behind a connection; defaults to the procfs resolver. */
  identity?: IdentitySource;
}

export interface ReloadResult {
  ok: boolean;
  error?: string;
  /** Open tunnels closed because the new policy denies them. */
  closed: number;
}

export interface ProxyStats {
  connections: number;
  accepted: number;
  tunnels: number;
  allowed: number;
  denied: number;
  audited: number;
  errors: number;
  reloads: number;
}

export interface RunningProxy {
  address: HostPort;
  sniAddress?: HostPort;
  reload(): Promise<ReloadResult>;
  close(): Promise<void>;
  stats(): ProxyStats;
}

type ConnectionKind = 'connect' | 'http' | 'sni';

interface OpenTunnel {
  kind: ConnectionKind;
  identity: ProcessIdentity;
  facts: RequestFacts;
  addresses: string[];
  /** Ends the connection (both sides); its audit event says why. */
  stop(cause: CloseCause): void;
}

/** What every audit event says about the caller. */
function identityFields(identity: ProcessIdentity): Partial<AuditEvent> {
  const out: Partial<AuditEvent> = {
    binary: identity.path,
    pid: identity.pid,
    ancestors: identity.ancestors.map((a) => a.path),
  };
  if (identity.unresolved_reason !== undefined) {
    out.unresolved_reason = identity.unresolved_reason;
    if (identity.unresolved_detail !== undefined) out.unresolved_detail = identity.unresolved_detail;
  }
  if (identity.integrity_violation !== undefined) out.integrity_violation = identity.integrity_violation;
  if (identity.original_destination !== undefined) out.original_destination = identity.original_destination;
  return out;
}

function unresolvedIdentity(detail: string): ProcessIdentity {
  return { path: UNRESOLVED, pid: null, ancestors: [], cmdline: [], sha256: null, unresolved_reason: 'no_socket_row', unresolved_detail: detail };
}

/** Addresses that name this proxy: the listen addresses, or every local one for a wildcard. */
function ownAddresses(listens: HostPort[]): Set<string> {
  const out = new Set<string>();
  for (const { host } of listens) {
    const canonical = canonicalAddress(host);
    if (canonical === '0.0.0.0' || canonical === '::') {
      for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) out.add(canonicalAddress(a.address));
    } else out.add(canonical);
  }
  return out;
}

function listen(server: net.Server, at: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      const a = server.address() as net.AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

// Relay buffers: a 64 KiB read fits a write without pausing the reader on every chunk.
const RELAY_HIGH_WATER_MARK = 256 * 1024;

const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/** The request head sent upstream: origin-form target, hop-by-hop fields dropped, one request per connection. */
function upstreamHead(head: RequestHead, path: string, authority: string, chunked: boolean): Buffer {
  const named = new Set(headerValues(head, 'connection').flatMap((v) => v.split(',').map((s) => s.trim().toLowerCase())));
  let text = `${head.method} ${path} HTTP/1.1\r\nHost: ${authority}\r\n`;
  for (const { name, value } of head.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    text += `${name}: ${value}\r\n`;
  }
  if (chunked) text += 'Transfer-Encoding: chunked\r\n';
  return Buffer.from(`${text}Connection: close\r\n\r\n`, 'latin1');
}

/** Hands out the bytes of one request body and nothing after it; null on a framing error. */
function bodyTaker(framing: BodyFraming): { done: boolean; take(chunk: Buffer): Buffer | null } {
  if (framing.kind === 'length') {
    let remaining = framing.length;
    return {
      get done() {
        return remaining === 0;
      },
      take(chunk) {
        const piece = chunk.subarray(0, remaining);
        remaining -= piece.length;
        return piece;
      },
    };
  }
  if (framing.kind === 'chunked') {
    const scanner = new ChunkedBodyScanner();
    let done = false;
    return {
      get done() {
        return done;
      },
      take(chunk) {
        const fed = scanner.feed(chunk);
        if ('error' in fed) return null;
        done = fed.done;
        return chunk.subarray(0, fed.consumed);
      },
    };
  }
  return { done: true, take: () => Buffer.alloc(0) };
}

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const limits = resolveLimits(options.limits);
  const engine = options.engine ?? (await PolicyEngine.fromFile(options.policyFile, options.regoDirs ?? []));
  const audit = options.audit;
  // Executables' hashes kept between runs: a new proxy does not hash the same interpreter again.
  const identities: IdentitySource = options.identity ?? new IdentityResolver({ hashStore: portcullisCacheDir('executable-hashes.json'), cmdline: false });
  const reportOnly = options.reportOnly === true;
  const counters: ProxyStats = { connections: 0, accepted: 0, tunnels: 0, allowed: 0, denied: 0, audited: 0, errors: 0, reloads: 0 };
  const tunnels = new Set<OpenTunnel>();
  const sockets = new Set<net.Socket>();
  const ctx: AuthoriseContext = {
    engine,
    lookup: createUpstreamLookup(options.resolver, limits.dnsTimeoutMs),
    ownAddresses: new Set(),
    reportOnly,
  };
  let closing = false;

  const resolveIdentity = (client: net.Socket, redirected: boolean): Promise<ProcessIdentity> => {
    const tuple: ConnectionTuple = {
      clientAddress: client.remoteAddress ?? '',
      clientPort: client.remotePort ?? 0,
      proxyAddress: client.localAddress ?? '',
      proxyPort: client.localPort ?? 0,
    };
    const opts: ResolveOptions = { redirected };
    if (options.anchorPid !== undefined) opts.anchorPid = options.anchorPid;
    if (identities.released) {
      // The client's FIN usually means it has closed its fd: say so at once, its next socket may
      // be on its way (at the latest, on close).
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        identities.released?.(tuple, opts);
      };
      client.once('end', release);
      client.once('close', release);
    }
    return identities.resolve(tuple, opts).catch((err: unknown) => unresolvedIdentity(`identity lookup failed: ${(err as Error).message}`));
  };

  const count = (decision: { decision: string }): void => {
    if (decision.decision === 'allow') counters.allowed++;
    else if (decision.decision === 'audit') counters.audited++;
    else counters.denied++;
  };

  /** Accepts a connection unless over the limit or the audit fails closed; tracks it for close(). */
  const admit = (client: net.Socket, refuse: (kind: AdmissionRefusal) => void): boolean => {
    client.on('error', () => client.destroy());
    // Refused sockets are tracked too: close() must not wait for a client that keeps one open.
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    const refusal: AdmissionRefusal | null =
      closing || counters.connections >= limits.maxConnections ? 'too_many_connections'
      : options.auditFailure !== 'open' && !audit.healthy() ? 'audit_unavailable'
      : null;
    if (refusal) {
      counters.errors++;
      refuse(refusal);
      return false;
    }
    counters.connections++;
    counters.accepted++;
    client.once('close', () => counters.connections--);
    return true;
  };

  /** Dials the checked addresses in order; the first that answers wins. */
  const dial = async (addresses: string[], port: number, downstream?: Downstream): Promise<net.Socket | { kind: ProxyErrorKind; detail: string }> => {
    let last: { kind: ProxyErrorKind; detail: string } = { kind: 'upstream_unreachable', detail: 'no address to dial' };
    for (const address of addresses) {
      const result = await new Promise<net.Socket | { kind: ProxyErrorKind; detail: string }>((resolve) => {
        // highWaterMark reaches the socket's Duplex options (the typings of net.connect omit it).
        const upstream = net.connect({
          host: address,
          port,
          allowHalfOpen: true,
          noDelay: true,
          highWaterMark: RELAY_HIGH_WATER_MARK,
          ...(downstream ? { onread: downstream.onread } : {}),
        } as net.NetConnectOpts);
        const timer = setTimeout(() => {
          upstream.destroy();
          resolve({ kind: 'upstream_timeout', detail: `no answer from ${address} port ${port} within ${limits.connectTimeoutMs} ms` });
        }, limits.connectTimeoutMs);
        upstream.once('connect', () => {
          clearTimeout(timer);
          upstream.removeAllListeners('error');
          // Until the relay takes over, an error just ends the socket (never an uncaught 'error').
          upstream.on('error', () => upstream.destroy());
          resolve(upstream);
        });
        upstream.once('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          upstream.destroy();
          resolve({ kind: 'upstream_unreachable', detail: `${address} port ${port}: ${err.code ?? err.message}` });
        });
      });
      if (result instanceof net.Socket) return result;
      last = result;
    }
    return last;
  };

  const track = (kind: ConnectionKind, identity: ProcessIdentity, facts: RequestFacts, client: net.Socket, dialed: Dialed): void => {
    const { upstream, addresses, downstream } = dialed;
    const started = process.hrtime.bigint();
    const relay = new Relay(client, upstream, downstream, limits.idleTimeoutMs, (cause: CloseCause, stats: RelayStats) => {
        tunnels.delete(tunnel);
        counters.tunnels--;
        audit.emit({
          kind: 'tunnel',
          via: kind,
          host: facts.host,
          port: facts.port,
          dialed: dialed.dialed,
          ...identityFields(identity),
          bytes_up: stats.bytesUp,
          bytes_down: stats.bytesDown,
          duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
          closed_by: cause,
        });
    });
    const tunnel: OpenTunnel = { kind, identity, facts, addresses, stop: (cause) => relay.stop(cause) };
    tunnels.add(tunnel);
    counters.tunnels++;
  };

  /** Decides, answers a refusal, or dials; emits the decision's audit event either way. */
  const decideAndDial = async (
    kind: ConnectionKind,
    client: net.Socket,
    identity: ProcessIdentity,
    facts: RequestFacts,
    onRefused: (kind: ProxyErrorKind, detail: string, policy: string | null) => void,
  ): Promise<Dialed | null> => {
    const auth = await authorise(ctx, identity, facts);
    const event: AuditEvent = {
      kind,
      ...auth.decision,
      host: facts.host,
      port: facts.port,
      ...identityFields(identity),
      client: `${client.remoteAddress ?? ''}:${client.remotePort ?? 0}`,
    };
    delete event.explicit_ips;
    if (facts.method !== undefined) event.method = facts.method;
    if (facts.path !== undefined) event.path = facts.path;
    if (auth.addresses) event.addresses = auth.addresses;
    if (!auth.ok) {
      event.error = auth.kind;
      if (statusOf(auth.kind) !== 403) event.error_detail = auth.detail;
      if (statusOf(auth.kind) === 403) count(auth.decision);
      else counters.errors++;
      audit.emit(event);
      onRefused(auth.kind, auth.detail, auth.decision.policy);
      return null;
    }
    if (client.destroyed) {
      event.error = 'client_gone';
      audit.emit(event);
      return null;
    }
    // Tunnels read the upstream into buffers of their own; forward HTTP reads it as a stream.
    const downstream = kind === 'http' ? undefined : new Downstream();
    const upstream = await dial(auth.addresses, facts.port, downstream);
    if (!(upstream instanceof net.Socket)) {
      event.error = upstream.kind;
      event.error_detail = upstream.detail;
      counters.errors++;
      audit.emit(event);
      onRefused(upstream.kind, upstream.detail, auth.decision.policy);
      return null;
    }
    count(auth.decision);
    event.dialed = upstream.remoteAddress;
    audit.emit(event);
    if (client.destroyed) {
      upstream.destroy();
      return null;
    }
    return { upstream, addresses: auth.addresses, dialed: upstream.remoteAddress ?? '', downstream };
  };

  const httpConnection = (client: net.Socket): void => {
    if (!admit(client, (kind) => client.end(admissionRefusal(kind)))) return;
    let buffered: Buffer = Buffer.alloc(0);
    const reply = (kind: ProxyErrorKind, detail: string, extra: { policy?: string | null; binary?: string | null; host?: string; port?: number } = {}): void => {
      if (client.writable) client.end(errorResponse({ kind, detail, ...extra }));
      client.setTimeout(5_000, () => client.destroy());
    };
    const timer = setTimeout(() => {
      client.off('data', onData);
      audit.emit({ kind: 'error', error: 'header_timeout', client: `${client.remoteAddress ?? ''}:${client.remotePort ?? 0}` });
      counters.errors++;
      reply('header_timeout', `the request head did not arrive within ${limits.headerTimeoutMs} ms`);
    }, limits.headerTimeoutMs);
    client.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseRequestHead(buffered, limits.maxHeaderBytes);
      if (parsed.status === 'incomplete') return;
      clearTimeout(timer);
      client.off('data', onData);
      client.pause();
      if (parsed.status === 'error') {
        counters.errors++;
        audit.emit({ kind: 'error', error: parsed.code === 431 ? 'headers_too_large' : 'bad_request', detail: parsed.message, client: `${client.remoteAddress ?? ''}:${client.remotePort ?? 0}` });
        reply(parsed.code === 431 ? 'headers_too_large' : parsed.code === 501 ? 'not_implemented' : 'bad_request', parsed.message);
        return;
      }
      const rest = buffered.subarray(parsed.length);
      // Identity is looked up only for a complete request: a slow or junk connection costs no procfs work.
      void handleRequest(client, parsed.head, rest, () => resolveIdentity(client, false), reply).catch((err: unknown) => {
        counters.errors++;
        audit.emit({ kind: 'error', error: 'internal', detail: (err as Error).message });
        client.destroy();
      });
    };
    client.on('data', onData);
  };

  const handleRequest = async (
    client: net.Socket,
    head: RequestHead,
    rest: Buffer,
    identityOf: () => Promise<ProcessIdentity>,
    reply: (kind: ProxyErrorKind, detail: string, extra?: { policy?: string | null; binary?: string | null; host?: string; port?: number }) => void,
  ): Promise<void> => {
    if (head.method === 'CONNECT') {
      const target = parseConnectTarget(head.target);
      if (!target.ok) return reply('bad_request', target.message);
      const facts: RequestFacts = { host: target.host, port: target.port, ip: target.ip };
      const identity = await identityOf();
      const dialed = await decideAndDial('connect', client, identity, facts, (kind, detail, policy) =>
        reply(kind, detail, { policy, binary: identity.path, host: facts.host, port: facts.port }),
      );
      if (!dialed) return;
      client.write(CONNECT_ESTABLISHED);
      if (rest.length > 0) dialed.upstream.write(rest);
      track('connect', identity, facts, client, dialed);
      client.resume();
      return;
    }
    const target = parseAbsoluteTarget(head.target);
    if (!target.ok) return reply(target.useConnect ? 'use_connect' : 'bad_request', target.message);
    const framing = requestBodyFraming(head);
    if (framing.kind === 'error') return reply(framing.code === 501 ? 'not_implemented' : 'bad_request', framing.message);
    const facts: RequestFacts = { host: target.host, port: target.port, ip: target.ip, method: head.method, path: target.path };
    const identity = await identityOf();
    const dialed = await decideAndDial('http', client, identity, facts, (kind, detail, policy) =>
      reply(kind, detail, { policy, binary: identity.path, host: facts.host, port: facts.port }),
    );
    if (!dialed) return;
    const { upstream } = dialed;
    upstream.write(upstreamHead(head, target.path, target.authority, framing.kind === 'chunked'));
    // Exactly the declared body goes upstream; anything after it is never forwarded, so a
    // second request cannot ride past the L7 check.
    const body = bodyTaker(framing);
    let bytesUp = 0;
    const forward = (chunk: Buffer): boolean => {
      if (body.done) return true;
      const taken = body.take(chunk);
      if (taken === null) {
        stopBoth('error');
        return false;
      }
      bytesUp += taken.length;
      return taken.length === 0 || upstream.write(taken);
    };
    const started = process.hrtime.bigint();
    let bytesDown = 0;
    const finish = (cause: string): void => {
      if (!tunnels.has(entry)) return;
      tunnels.delete(entry);
      counters.tunnels--;
      audit.emit({
        kind: 'tunnel',
        via: 'http',
        host: facts.host,
        port: facts.port,
        dialed: dialed.dialed,
        ...identityFields(identity),
        bytes_up: bytesUp,
        bytes_down: bytesDown,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
        closed_by: cause,
      });
    };
    const stopBoth = (cause: CloseCause): void => {
      finish(cause);
      client.destroy();
      upstream.destroy();
    };
    const entry: OpenTunnel = {
      kind: 'http',
      identity,
      facts,
      addresses: dialed.addresses,
      stop: stopBoth,
    };
    tunnels.add(entry);
    counters.tunnels++;
    client.on('data', (chunk: Buffer) => {
      if (!forward(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    if (forward(rest)) client.resume();
    else upstream.once('drain', () => client.resume());
    upstream.on('data', (chunk: Buffer) => (bytesDown += chunk.length));
    upstream.pipe(client);
    client.setTimeout(limits.idleTimeoutMs, () => stopBoth('idle'));
    upstream.on('error', () => stopBoth('error'));
    client.on('error', () => stopBoth('error'));
    upstream.once('close', () => {
      finish('finished');
      client.end();
    });
    client.once('close', () => {
      finish('finished');
      upstream.destroy();
    });
  };

  const sniConnection = (client: net.Socket): void => {
    if (!admit(client, () => client.destroy())) return;
    const peer = `${client.remoteAddress ?? ''}:${client.remotePort ?? 0}`;
    let identityPromise: Promise<ProcessIdentity> | undefined;
    const identityOf = (): Promise<ProcessIdentity> => (identityPromise ??= resolveIdentity(client, true));
    let buffered: Buffer = Buffer.alloc(0);
    const fail = async (reason: string): Promise<void> => {
      counters.errors++;
      // Who sent it is looked up before closing, while the socket row still exists.
      const identity = await identityOf();
      client.destroy();
      audit.emit({
        kind: 'sni',
        allow: false,
        decision: 'deny',
        reason,
        policy: null,
        host: null,
        port: 443,
        ...identityFields(identity),
        client: peer,
        error: 'bad_client_hello',
      });
    };
    const timer = setTimeout(() => {
      client.off('data', onData);
      void fail(`no complete ClientHello within ${limits.helloTimeoutMs} ms`);
    }, limits.helloTimeoutMs);
    client.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseClientHello(buffered, limits.maxHelloBytes);
      if (parsed.status === 'incomplete') return;
      clearTimeout(timer);
      client.off('data', onData);
      client.pause();
      if (parsed.status === 'error') return void fail(`malformed ClientHello: ${parsed.message}`);
      if (parsed.serverName === null) return void fail('ClientHello without a server name (SNI)');
      const host = parseHost(parsed.serverName);
      if (!host.ok) return void fail(`bad server name: ${host.message}`);
      const facts: RequestFacts = { host: host.host, port: 443, ip: host.ip };
      void (async () => {
        const identity = await identityOf();
        const dialed = await decideAndDial('sni', client, identity, facts, () => client.destroy());
        if (!dialed) return;
        dialed.upstream.write(buffered);
        track('sni', identity, facts, client, dialed);
        client.resume();
      })().catch(() => client.destroy());
    };
    client.on('data', onData);
  };

  const httpServer = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: RELAY_HIGH_WATER_MARK }, httpConnection);
  const address = await listen(httpServer, options.listen);
  let sniServer: net.Server | undefined;
  let sniAddress: HostPort | undefined;
  try {
    if (options.sniListen) {
      sniServer = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: RELAY_HIGH_WATER_MARK }, sniConnection);
      sniAddress = await listen(sniServer, options.sniListen);
    }
  } catch (err) {
    httpServer.close();
    throw err;
  }
  for (const a of ownAddresses(sniAddress ? [address, sniAddress] : [address])) (ctx.ownAddresses as Set<string>).add(a);
  // In the background: the first client need not wait for the process table to be listed.
  void identities.warm?.().catch(() => undefined);

  const reload = async (): Promise<ReloadResult> => {
    try {
      engine.replace(await loadPolicyFile(options.policyFile));
    } catch (err) {
      const error = (err as Error).message;
      audit.emit({ kind: 'reload', ok: false, error, policy_file: options.policyFile, detail: 'the new policy was refused; the previous one stays in force' });
      return { ok: false, error, closed: 0 };
    }
    counters.reloads++;
    let closed = 0;
    if (!reportOnly) {
      for (const tunnel of [...tunnels]) {
        const decision = engine.decide(decisionInputFor(tunnel.identity, tunnel.facts, tunnel.addresses));
        if (decision.allow) continue;
        closed++;
        audit.emit({ kind: tunnel.kind, ...decision, host: tunnel.facts.host, port: tunnel.facts.port, ...identityFields(tunnel.identity), detail: 'open connection closed: the reloaded policy denies it' });
        tunnel.stop('policy_reload');
      }
    }
    audit.emit({ kind: 'reload', ok: true, policy_file: options.policyFile, tunnels_closed: closed });
    return { ok: true, closed };
  };

  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    const closed = Promise.all(
      [httpServer, sniServer].filter((s): s is net.Server => s !== undefined).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    for (const tunnel of [...tunnels]) tunnel.stop('shutdown');
    for (const socket of [...sockets]) socket.destroy();
    // A resolver made here owns a helper process; one passed in belongs to the caller.
    if (!options.identity && identities instanceof IdentityResolver) identities.close();
    await closed;
  };

  return { address, ...(sniAddress ? { sniAddress } : {}), reload, close, stats: () => ({ ...counters }) };
}
