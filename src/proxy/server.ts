// The egress proxy service: an HTTP listener (CONNECT and forward HTTP) and an optional
// transparent SNI listener, deciding per connection who is calling and whether it may go.
// This module wires the parts: the listeners hand each connection to its entry path
// (paths/*.ts), every path runs the one pipeline (pipeline.ts); reload and close act on all.
// No process-global side effects (signals, file watching): the CLI adds those.
import net from 'node:net';
import os from 'node:os';
import type { AuditFailureMode, AuditSink } from '../audit/sink.js';
import { PolicyEngine } from '../engine/engine.js';
import type { InspectionTls } from '../tls/inspection.js';
import { IdentityResolver } from '../identity/resolver.js';
import { loadPolicyFile } from '../policy/load.js';
import { portcullisCacheDir } from '../util/cache-dir.js';
import { refuseByClosing, refuseHttp } from './answers.js';
import { decisionInputFor, opaqueTunnelRefusal, type AuthoriseContext } from './authorise.js';
import type { IdentitySource } from './caller.js';
import { resolveLimits, type ProxyLimits } from './limits.js';
import { acceptHttpRequest, headTimedOut } from './paths/http-request.js';
import { acceptSni } from './paths/sni.js';
import { acceptSocks4, acceptSocks5 } from './paths/socks.js';
import { Pipeline, type ProxyStats } from './pipeline.js';
import { FIRST_BYTES, readHead } from './read-head.js';
import { RELAY_HIGH_WATER_MARK } from './relay.js';
import { SOCKS4, SOCKS5 } from './socks-messages.js';
import { canonicalAddress } from './ssrf.js';
import { Tunnels } from './tunnels.js';
import { createUpstreamLookup } from './upstream-dns.js';
import { UpstreamRoutes, type UpstreamProxy } from './upstream-proxy.js';

export type { IdentitySource } from './caller.js';
export type { ProxyStats } from './pipeline.js';
export type { UpstreamProxy } from './upstream-proxy.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface ProxyOptions {
  /** The policy file; with `loadPolicy`, what reload events name as the policy's source. */
  policyFile: string;
  /** Brings the engine to the newest policy, throwing (the last good one stays) when it cannot;
   * by default the policy file is read again. */
  loadPolicy?: () => Promise<void>;
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
  /**
   * TLS inspection (`--ca-cert`/`--ca-key`): the CA, its leaves and the upstream trust. Without
   * it, a tunnel the policy wants inspected is refused (inspection_unavailable).
   */
  inspection?: InspectionTls;
  /** An upstream (corporate) proxy that allowed connections go through, except its `direct` hosts. */
  upstreamProxy?: UpstreamProxy;
}

export interface ReloadResult {
  ok: boolean;
  error?: string;
  /** Open tunnels closed because the new policy denies them. */
  closed: number;
}

export interface RunningProxy {
  address: HostPort;
  sniAddress?: HostPort;
  reload(): Promise<ReloadResult>;
  /** The engine was given a new policy from elsewhere (a bundle service): re-check open tunnels. */
  policyChanged(): number;
  close(): Promise<void>;
  stats(): ProxyStats;
}

/** At close, how long the stopped tunnels are given to end (they end within a few ticks). */
const TUNNELS_END_MS = 2_000;

/** What a connection on the listen port is handed to, once its first bytes are in. */
type ListenPortPath = (p: Pipeline, client: net.Socket, first: Buffer, deadline: number) => void;

/** The listen port speaks HTTP (CONNECT, forward); its first byte is where another protocol branches off. */
function pathForFirstByte(byte: number): ListenPortPath {
  // No HTTP method starts with a control byte: 0x05 is a SOCKS5 greeting, 0x04 a SOCKS4 request.
  if (byte === SOCKS5) return acceptSocks5;
  if (byte === SOCKS4) return acceptSocks4;
  return acceptHttpRequest;
}

function onListenPort(p: Pipeline, client: net.Socket): void {
  if (!p.admit(client, refuseHttp)) return;
  const deadline = performance.now() + p.limits.headerTimeoutMs;
  // A client that says nothing is answered as the HTTP proxy it connected to.
  readHead(client, FIRST_BYTES, deadline, () => headTimedOut(p, client), ({ chunk }) => pathForFirstByte(chunk[0]!)(p, client, chunk, deadline));
}

function onSniPort(p: Pipeline, client: net.Socket): void {
  if (p.admit(client, refuseByClosing)) acceptSni(p, client);
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

function createListener(onConnection: (client: net.Socket) => void): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: RELAY_HIGH_WATER_MARK }, onConnection);
}

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const limits = resolveLimits(options.limits);
  const engine = options.engine ?? (await PolicyEngine.fromFile(options.policyFile, options.regoDirs ?? []));
  const audit = options.audit;
  // Executables' hashes kept between runs: a new proxy does not hash the same interpreter again.
  const identities: IdentitySource = options.identity ?? new IdentityResolver({ hashStore: portcullisCacheDir('executable-hashes.json'), cmdline: false });
  const reportOnly = options.reportOnly === true;
  const counters: ProxyStats = { connections: 0, accepted: 0, tunnels: 0, allowed: 0, denied: 0, audited: 0, errors: 0, reloads: 0 };
  const inspection = options.inspection;
  const lookup = createUpstreamLookup(options.resolver, limits.dnsTimeoutMs);
  const decisions: AuthoriseContext = { engine, lookup, ownAddresses: new Set(), reportOnly, canInspect: inspection !== undefined };
  const tunnels = new Tunnels(audit, counters, limits.idleTimeoutMs);
  const pipeline = new Pipeline({ limits, audit, counters, decisions, identities, anchorPid: options.anchorPid, tunnels, auditFailure: options.auditFailure, routes: new UpstreamRoutes(options.upstreamProxy), inspection });

  const httpServer = createListener((client) => onListenPort(pipeline, client));
  const address = await listen(httpServer, options.listen);
  let sniServer: net.Server | undefined;
  let sniAddress: HostPort | undefined;
  try {
    if (options.sniListen) {
      sniServer = createListener((client) => onSniPort(pipeline, client));
      sniAddress = await listen(sniServer, options.sniListen);
    }
  } catch (err) {
    httpServer.close();
    throw err;
  }
  for (const a of ownAddresses(sniAddress ? [address, sniAddress] : [address])) (decisions.ownAddresses as Set<string>).add(a);
  // In the background: the first client need not wait for the process table to be listed.
  void identities.warm?.().catch(() => undefined);

  const loadPolicy = options.loadPolicy ?? (async () => engine.replace(await loadPolicyFile(options.policyFile)));
  /** The engine holds a new policy: open tunnels it denies are cut, and the change is audited. */
  const policyChanged = (): number => {
    counters.reloads++;
    pipeline.policyChanged();
    // Report-only closes nothing: it only records what the policy would deny. An opaque tunnel
    // that now needs inspection is cut too.
    const closed = reportOnly
      ? 0
      : tunnels.cutDenied((t) => {
          const allowed = engine.decide(decisionInputFor(t.identity, t.facts, t.addresses));
          // An inspected connection decides each request anew: only the host itself is re-checked.
          return t.inspected ? allowed : (opaqueTunnelRefusal(allowed, t.facts, inspection !== undefined) ?? allowed);
        });
    audit.emit({ kind: 'reload', ok: true, policy_file: options.policyFile, tunnels_closed: closed });
    return closed;
  };
  const reload = async (): Promise<ReloadResult> => {
    try {
      await loadPolicy();
    } catch (err) {
      const error = (err as Error).message;
      audit.emit({ kind: 'reload', ok: false, error, policy_file: options.policyFile, detail: 'the new policy was refused; the previous one stays in force' });
      return { ok: false, error, closed: 0 };
    }
    return { ok: true, closed: policyChanged() };
  };

  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    const closed = Promise.all(
      [httpServer, sniServer].filter((s): s is net.Server => s !== undefined).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    pipeline.close();
    // A resolver made here owns a helper process; one passed in belongs to the caller.
    if (!options.identity && identities instanceof IdentityResolver) identities.close();
    await closed;
    // The listeners close as soon as their sockets are destroyed, before those sockets' 'close'
    // events, which end the tunnels: wait for those (bounded), so that every tunnel event is
    // emitted before the caller flushes the audit.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([tunnels.ended(), new Promise<void>((resolve) => (timer = setTimeout(resolve, TUNNELS_END_MS).unref()))]);
    clearTimeout(timer);
  };

  return { address, ...(sniAddress ? { sniAddress } : {}), reload, policyChanged, close, stats: () => ({ ...counters }) };
}
