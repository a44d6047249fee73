// The stages every entry path shares, in the order a connection meets them:
//
//   admit → [the path reads its head] → identify → decide → dial → [tunnels: relay] → audit
//
// A path (paths/*.ts) reads its own first message and answers in its own form (answers.ts);
// what must be the same for every path lives here: admission, the identity lookup, the
// decision flow and its audit event, dialing exactly the checked addresses (or through the
// upstream proxy, per the connection's route), and the counters.
// Deciding and dialing are separate steps: a path that decides many requests over one
// connection dials once.
import net from 'node:net';
import type { AuditEvent } from '../audit/events.js';
import type { AuditFailureMode, AuditSink } from '../audit/sink.js';
import type { CredentialStore } from '../credentials/store.js';
import type { ProcessIdentity } from '../identity/types.js';
import type { Decision } from '../policy/types.js';
import type { InspectionTls } from '../tls/inspection.js';
import type { Refuse, Refusal } from './answers.js';
import { UpstreamPool } from './inspect/upstream-pool.js';
import { authorise, decisionInputFor, type AuthoriseContext, type RequestFacts } from './authorise.js';
import { lookUpCaller, peerOf, UNKNOWN_CALLER, writeCallerFields, type IdentitySource } from './caller.js';
import { dialRoute, type DialFailure, type DialPurpose, type DialedUpstream } from './dialer.js';
import type { Downstream } from './downstream.js';
import { EarlyDial, sharedLookup } from './early-dial.js';
import type { ProxyLimits } from './limits.js';
import { letThrough } from './report-only.js';
import { statusOf } from './responses.js';
import type { ConnectionKind, Dialed, Tracked, Tunnels } from './tunnels.js';
import { placeholdersInHost } from '../credentials/swap.js';
import type { UpstreamLookup } from './upstream-dns.js';
import { upstreamProxyName, type Route, type UpstreamRoutes } from './upstream-proxy.js';

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

/** A request the decision allowed, on its way to be dialed. */
export interface Allowed {
  kind: ConnectionKind;
  client: net.Socket;
  identity: ProcessIdentity;
  facts: RequestFacts;
  decision: Decision;
  /** The checked addresses: the only ones that may be dialed. */
  addresses: string[];
  refuse: Refuse;
  /** The decision's audit event, emitted once the dial has an outcome. */
  event: AuditEvent;
  /** A dial started before the caller was known, for this tunnel (dial() takes it). */
  early?: EarlyDial;
}

export interface PipelineOptions {
  limits: ProxyLimits;
  audit: AuditSink;
  counters: ProxyStats;
  decisions: AuthoriseContext;
  identities: IdentitySource;
  anchorPid: number | undefined;
  tunnels: Tunnels;
  /** While the audit cannot be written: refuse new connections (closed, the default) or serve them. */
  auditFailure: AuditFailureMode | undefined;
  /** Which connections go through an upstream proxy (none when absent). */
  routes?: UpstreamRoutes;
  /** The CA and trust for TLS inspection; without it nothing is inspected. */
  inspection?: InspectionTls | undefined;
}

/** A dialed connection; `absoluteForm`: a request must be written in absolute form (to an upstream proxy). */
export type DialedRoute = Dialed & Pick<DialedUpstream, 'absoluteForm'>;

export class Pipeline {
  readonly limits: ProxyLimits;
  readonly tunnels: Tunnels;
  readonly inspection: InspectionTls | undefined;
  /** Idle upstream connections of inspected requests, shared by every inspected connection. */
  readonly upstreamPool = new UpstreamPool();
  private closing = false;
  /** Every client socket, admitted or refused: close() ends them all. */
  private readonly sockets = new Set<net.Socket>();
  /** Each client's identity lookup, once started. */
  private readonly callers = new WeakMap<net.Socket, Promise<ProcessIdentity>>();

  constructor(private readonly options: PipelineOptions) {
    this.limits = options.limits;
    this.tunnels = options.tunnels;
    this.inspection = options.inspection;
  }

  /** Admits nothing more and ends every connection (tunnels first, so each says why it ended). */
  close(): void {
    this.closing = true;
    this.tunnels.stopAll('shutdown');
    for (const socket of [...this.sockets]) socket.destroy();
    this.upstreamPool.clear();
  }

  /**
   * A new policy is in force: pooled upstream connections were dialed to addresses the old one
   * checked, so none is handed to a request any more (idle ones close now, busy ones after their exchange).
   */
  policyChanged(): void {
    this.upstreamPool.clear();
  }

  /** Lets a new connection in, or refuses it in the listener's form; the one admission check. */
  admit(client: net.Socket, refuse: Refuse): boolean {
    client.on('error', () => client.destroy());
    // Refused sockets are tracked too: close() must not wait for a client that keeps one open.
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    const refusal = this.admissionRefusal();
    if (refusal) {
      this.options.counters.errors++;
      refuse(client, refusal);
      return false;
    }
    this.options.counters.connections++;
    this.options.counters.accepted++;
    client.once('close', () => this.options.counters.connections--);
    return true;
  }

  /** Why a new connection cannot be taken now, or null. */
  private admissionRefusal(): Refusal | null {
    if (this.closing || this.options.counters.connections >= this.limits.maxConnections) {
      return { kind: 'too_many_connections', detail: 'the proxy is at its connection limit; try again later' };
    }
    if (this.options.auditFailure !== 'open' && !this.options.audit.healthy()) {
      return { kind: 'audit_unavailable', detail: 'the audit log cannot be written; new connections are refused until it can' };
    }
    return null;
  }

  /**
   * The process behind the client (`redirected`: it reached the proxy through a redirect), looked
   * up once per connection: every later ask gets the same answer. Not at accept: a connection
   * that never sends a valid first message must not cost a lookup (500 silent connections would
   * be 500 lookups, some of them a walk over every process).
   */
  identify(client: net.Socket, redirected: boolean): Promise<ProcessIdentity> {
    let caller = this.callers.get(client);
    if (!caller) {
      caller = lookUpCaller(this.options.identities, client, redirected, this.options.anchorPid);
      this.callers.set(client, caller);
    }
    return caller;
  }

  /**
   * For a tunnel: its lookup and dial, started now, beside the identity lookup, when the policy
   * lets host and port through for any caller (see early-dial.ts); null when they must wait for
   * the caller's decision. The same `downstream` goes to dial() later.
   */
  dialEarly(facts: RequestFacts, downstream: Downstream): EarlyDial | null {
    const { decisions } = this.options;
    if (decisions.reportOnly || facts.method !== undefined) return null;
    // A placeholder in the host is refused once the caller is known: never looked up.
    if (placeholdersInHost(facts.host, this.credentials.table).length > 0) return null;
    const anyCaller = decisions.engine.decide(decisionInputFor(UNKNOWN_CALLER, facts));
    if (!anyCaller.allow || anyCaller.inspect === true) return null;
    const lookup = sharedLookup(decisions.lookup, facts.host);
    const authorisation = authorise({ ...decisions, lookup }, UNKNOWN_CALLER, facts);
    const route = this.routeFor(facts);
    const dialed = authorisation.then((auth) =>
      auth.ok && auth.decision.inspect !== true ? dialRoute(route, { host: facts.host, port: facts.port, addresses: auth.addresses }, 'tunnel', this.limits.connectTimeoutMs, downstream) : null,
    );
    return new EarlyDial(lookup, dialed, downstream);
  }

  /**
   * Decides one request. A refusal is counted, audited and answered with `refuse` here. With
   * `early` (dialEarly), its lookup stands for the decision's, and an allowed tunnel takes its dial.
   */
  async decide(kind: ConnectionKind, client: net.Socket, identity: ProcessIdentity, facts: RequestFacts, refuse: Refuse, early?: EarlyDial | null): Promise<Allowed | null> {
    const allowed = await this.decideOnce(kind, client, identity, facts, refuse, early?.lookup);
    // Taken only for the tunnel it was dialed for: allowed, opaque, over the addresses it dialed.
    if (early && allowed && allowed.decision.inspect !== true) allowed.early = early;
    else early?.drop();
    return allowed;
  }

  private async decideOnce(kind: ConnectionKind, client: net.Socket, identity: ProcessIdentity, facts: RequestFacts, refuse: Refuse, lookup: UpstreamLookup | undefined): Promise<Allowed | null> {
    const decisions = this.options.decisions;
    const auth = await authorise(lookup ? { ...decisions, lookup } : decisions, identity, facts);
    const event = decisionEvent(kind, auth.decision, identity, facts, client);
    if (auth.addresses) event.addresses = auth.addresses;
    if (!auth.ok) {
      event.error = auth.kind;
      const denied = statusOf(auth.kind) === 403;
      if (denied) this.count(auth.decision);
      else {
        event.error_detail = auth.detail;
        this.options.counters.errors++;
      }
      this.options.audit.emit(event);
      refuse(client, { kind: auth.kind, detail: auth.detail, policy: auth.decision.policy, binary: identity.path, host: facts.host, port: facts.port });
      return null;
    }
    if (client.destroyed) {
      event.error = 'client_gone';
      this.options.audit.emit(event);
      return null;
    }
    return { kind, client, identity, facts, decision: auth.decision, addresses: auth.addresses, refuse, event };
  }

  /**
   * Dials the allowed request along its route (directly its checked addresses, or through the
   * upstream proxy) and audits its decision with what answered (or the dial's failure,
   * answered with the path's `refuse`). `purpose`: an opaque tunnel, or one request the path writes.
   */
  async dial(allowed: Allowed, downstream?: Downstream, purpose: DialPurpose = 'tunnel'): Promise<DialedRoute | null> {
    const { client, event, facts, identity } = allowed;
    const route = this.routeFor(facts);
    const target = { host: facts.host, port: facts.port, addresses: allowed.addresses };
    const dialed = (await takeEarly(allowed, downstream, purpose)) ?? (await dialRoute(route, target, purpose, this.limits.connectTimeoutMs, downstream));
    if (route.via === 'upstream_proxy') event.upstream_proxy = upstreamProxyName(route.proxy);
    if (!('socket' in dialed)) {
      event.error = dialed.kind;
      event.error_detail = dialed.detail;
      if (dialed.upstreamProxyStatus !== undefined) event.upstream_proxy_status = dialed.upstreamProxyStatus;
      this.options.counters.errors++;
      this.options.audit.emit(event);
      allowed.refuse(client, { kind: dialed.kind, detail: dialed.detail, policy: allowed.decision.policy, binary: identity.path, host: facts.host, port: facts.port });
      return null;
    }
    const upstream = dialed.socket;
    this.count(allowed.decision);
    event.dialed = upstream.remoteAddress;
    this.options.audit.emit(event);
    if (client.destroyed) {
      upstream.destroy();
      return null;
    }
    const out: DialedRoute = { kind: allowed.kind, identity, facts, addresses: allowed.addresses, upstream, dialed: upstream.remoteAddress ?? '', downstream };
    if (dialed.absoluteForm) out.absoluteForm = dialed.absoluteForm;
    return out;
  }

  /** How `facts`' host is reached: directly, or through the upstream proxy. */
  routeFor(facts: RequestFacts): Route {
    return this.options.routes?.routeFor(facts.host) ?? { via: 'direct' };
  }

  /** The credentials of the policy in force (their placeholders are refused where none is bound). */
  get credentials(): CredentialStore {
    return this.options.decisions.engine.credentials;
  }

  /** A refusal the policy's decision did not make (a misused credential placeholder): counted as a deny and audited. */
  refused(event: AuditEvent): void {
    this.options.counters.denied++;
    this.options.audit.emit(event);
  }

  /**
   * An allowed connection the proxy terminates itself (TLS inspection): nothing is dialed yet
   * (each request dials when it is allowed); its decision is audited and counted now.
   */
  acceptInspected(allowed: Allowed): Tracked {
    this.count(allowed.decision);
    this.options.audit.emit(allowed.event);
    const { kind, identity, facts, addresses } = allowed;
    return { kind, identity, facts, addresses, dialed: '', inspected: { alpn: '' } };
  }

  /**
   * One request on an inspected connection, decided with the policy in force now (a reload
   * applies to the next request) against the connection's checked addresses. Report-only
   * lets a would-deny through as `audit`. Counted; the caller audits it with its outcome.
   */
  decideRequest(identity: ProcessIdentity, facts: RequestFacts, addresses: string[]): Decision {
    const decided = this.options.decisions.engine.decide(decisionInputFor(identity, facts, addresses));
    const decision = decided.allow || !this.options.decisions.reportOnly ? decided : letThrough(decided);
    this.count(decision);
    return decision;
  }

  /** Counts a refusal made outside the engine (a malformed or misdirected request). */
  countRefusal(): void {
    this.options.counters.denied++;
  }

  /** Writes an audit event as it is. */
  emit(event: AuditEvent): void {
    this.options.audit.emit(event);
  }

  /** An error outside any decision (a bad head, a timeout, an internal fault): counted and audited. */
  error(event: AuditEvent): void {
    this.options.counters.errors++;
    this.options.audit.emit(event);
  }

  private count(decision: Decision): void {
    const counters = this.options.counters;
    if (decision.decision === 'allow') counters.allowed++;
    else if (decision.decision === 'audit') counters.audited++;
    else counters.denied++;
  }
}

/** The outcome of the tunnel's early dial, when one was made for it; null: dial now. */
function takeEarly(allowed: Allowed, downstream: Downstream | undefined, purpose: DialPurpose): Promise<DialedUpstream | DialFailure | null> {
  const early = allowed.early;
  if (!early) return Promise.resolve(null);
  if (purpose === 'tunnel' && early.downstream === downstream) return early.take();
  early.drop();
  return Promise.resolve(null);
}

/**
 * The audit event of a decision (completed by the dial's outcome), built field by field in the
 * order of the line: no spread copies, and no `delete` (which would leave V8 a slow
 * dictionary-mode object for the serialiser).
 */
function decisionEvent(kind: ConnectionKind, decision: Decision, identity: ProcessIdentity, facts: RequestFacts, client: net.Socket): AuditEvent {
  const event: AuditEvent = { kind };
  for (const key in decision) if (key !== 'explicit_ips') event[key] = decision[key as keyof Decision];
  event.host = facts.host;
  event.port = facts.port;
  writeCallerFields(event, identity);
  event.client = peerOf(client);
  if (facts.method !== undefined) event.method = facts.method;
  if (facts.path !== undefined) event.path = facts.path;
  return event;
}
