// The DNS proxy (I/O): UDP and TCP on one port. A query for a name some policy endpoint names
// is forwarded upstream; any other name is refused (REFUSED, or NXDOMAIN if configured) with a
// `dns` audit event, which also stops exfiltration through queries under foreign domains. For
// names an any-binary policy covers, every answered address goes into the nft host maps before
// the answer is released, so the client's first connection cannot race the rule.
import dgram from 'node:dgram';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { canonicalIpHost } from '../net/address.js';
import type { Policy } from '../policy/types.js';
import type { AuditEvent } from '../audit/events.js';
import { placeholdersInHost, type SwapTable } from '../credentials/swap.js';
import type { AuditSink } from '../audit/sink.js';
import type { HostElement, NftSetFeeder, TimedHostElement } from '../nft/set-feeder.js';
import { forbiddenAddressClass } from '../net/classes.js';
import { answeredAddresses } from './answers.js';
import { CoverageIndex, addressAllowed, canonicalQueryName, type NameCoverage } from './coverage.js';
import { HandedOutBook } from './handed-out.js';
import { UdpUpstream, tcpQuery, type UpstreamAddress } from './upstream.js';
import { RCODE, buildReply, buildUpstreamQuery, matchResponse, parseQuery, qtypeName, tcpFrame, withId, type ParsedQuery, type Rcode } from './wire.js';

export interface DnsProxyOptions {
  listen: { host: string; port: number };
  upstream: UpstreamAddress;
  /** Normalised policies (src/policy/load.ts). */
  policies: Policy[];
  /** Fills the nft host maps; without it nothing is added (proxy-only enforcement). */
  feeder?: NftSetFeeder;
  audit?: AuditSink;
  /** Answer for names no endpoint covers (default REFUSED). */
  refusal?: 'refused' | 'nxdomain';
  /** Host-map elements live at least this long, whatever the TTL (default 30 s). */
  ttlFloorSeconds?: number;
  /** Addresses kept in the maps per name; the oldest is evicted (default 16). */
  maxAddressesPerName?: number;
  /** SERVFAIL when the upstream has not answered by then (default 2000 ms). */
  upstreamTimeoutMs?: number;
  /** TCP limits: simultaneous connections (default 128), idle time (default 10 s). */
  maxTcpConnections?: number;
  tcpIdleTimeoutMs?: number;
  /** Also emit a `dns` audit event for every forwarded answer (default: refusals and failures only). */
  auditAnswers?: boolean;
  /** Credentials whose placeholders are refused in query names (REFUSED, `credential_misuse`). */
  credentials?: { readonly table: SwapTable };
}

export interface RunningDnsProxy {
  address: { host: string; port: number };
  /**
   * Switches to new policies. With a feeder, call it once the ruleset rendered from the same
   * policies is loaded: the feeder then forgets what it wrote into the old maps.
   */
  setPolicies(policies: Policy[]): void;
  /** The name(s) this proxy handed `address` out for, or undefined when it never did. */
  handedOut(address: string): string | undefined;
  /** Counters, for benchmarks and diagnostics. */
  stats: DnsProxyStats;
  close(): Promise<void>;
}

export interface DnsProxyStats {
  forwarded: number;
  refused: number;
  malformed: number;
  servfail: number;
}

type Transport = 'udp' | 'tcp';

/** A TCP query frame longer than this is not a query: the connection is dropped. */
const MAX_TCP_QUERY = 1024;
const MAX_TCP_IN_FLIGHT = 32;
const COVERAGE_CACHE = 10_000;
const AUDIT_PER_SECOND = 1000;
const RCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RCODE).map(([k, v]) => [v, k]));

export class DnsProxyError extends Error {
  override name = 'DnsProxyError';
}

export async function startDnsProxy(options: DnsProxyOptions): Promise<RunningDnsProxy> {
  const listenHost = canonicalIpHost(options.listen.host);
  const upstreamHost = canonicalIpHost(options.upstream.host);
  if (listenHost === null) throw new DnsProxyError(`listen address "${options.listen.host}" must be an IP address`);
  if (upstreamHost === null) throw new DnsProxyError(`upstream address "${options.upstream.host}" must be an IP address`);
  const upstream = { host: upstreamHost, port: options.upstream.port };
  const timeoutMs = options.upstreamTimeoutMs ?? 2000;
  const ttlFloor = options.ttlFloorSeconds ?? 30;
  const refusalRcode: Rcode = options.refusal === 'nxdomain' ? RCODE.NXDOMAIN : RCODE.REFUSED;
  const maxTcp = options.maxTcpConnections ?? 128;
  const idleMs = options.tcpIdleTimeoutMs ?? 10_000;
  const feeder = options.feeder;
  const audit = options.audit;
  const book = new HandedOutBook(options.maxAddressesPerName ?? 16);
  const stats: DnsProxyStats = { forwarded: 0, refused: 0, malformed: 0, servfail: 0 };

  let index = new CoverageIndex(options.policies);
  let coverageCache = new Map<string, NameCoverage>();
  const coverageOf = (name: string): NameCoverage => {
    let c = coverageCache.get(name);
    if (c === undefined) {
      c = index.lookup(name);
      if (coverageCache.size >= COVERAGE_CACHE) coverageCache = new Map();
      coverageCache.set(name, c);
    }
    return c;
  };

  // A flood of refused queries must not become a flood of audit lines: at most
  // AUDIT_PER_SECOND events a second, and one line saying how many were left out.
  let auditWindow = 0;
  let auditCount = 0;
  let auditSuppressed = 0;
  const flushSuppressed = (): void => {
    if (auditSuppressed === 0 || audit === undefined) return;
    const suppressed = auditSuppressed;
    auditSuppressed = 0;
    try {
      audit.emit({ kind: 'dns', host: null, port: null, reason: `${suppressed} dns audit events left out (more than ${AUDIT_PER_SECOND} a second)`, suppressed });
    } catch {
      // as below
    }
  };
  const emit = (event: AuditEvent): void => {
    if (audit === undefined) return;
    try {
      const second = Math.floor(Date.now() / 1000);
      if (second !== auditWindow) {
        flushSuppressed();
        auditWindow = second;
        auditCount = 0;
      }
      if (auditCount >= AUDIT_PER_SECOND) {
        auditSuppressed++;
        return;
      }
      auditCount++;
      audit.emit(event);
    } catch {
      // auditing must never take the resolver down
    }
  };

  const dnsEvent = (query: ParsedQuery, transport: Transport, client: string, fields: Partial<AuditEvent>): AuditEvent => ({
    kind: 'dns',
    host: query.name.toLowerCase(),
    port: null,
    qtype: qtypeName(query.qtype),
    transport,
    client,
    allow: false,
    decision: 'deny',
    policy: null,
    reason: '',
    ...fields,
  });

  /**
   * The last answer recorded per name and query type, and the host-map elements of each of its addresses: an
   * answer identical to the last skips the book and the element computation (the hot path).
   */
  let lastAnswer = new Map<string, { key: string; elements: Map<string, HostElement[]> }>();

  /** Records the answer and puts its addresses into the host maps for the covering kernel endpoints. */
  const feed = async (name: string, qtype: number, coverage: NameCoverage, response: Buffer): Promise<string[]> => {
    const answered = answeredAddresses(response);
    if (answered.length === 0) return [];
    const ttlOf = new Map<string, number>();
    const familyOf = new Map<string, 4 | 6>();
    for (const a of answered) {
      ttlOf.set(a.address, Math.max(ttlOf.get(a.address) ?? 0, a.ttl));
      familyOf.set(a.address, a.family);
    }
    const order = [...ttlOf.keys()];
    const key = order.join(' ');
    const memoKey = `${qtype} ${name}`;
    let last = lastAnswer.get(memoKey);
    if (last === undefined || last.key !== key) {
      const elements = new Map<string, HostElement[]>();
      const withheld: string[] = [];
      const elementsOf = (address: string): HostElement[] => {
        const parsed = ipaddr.parse(address);
        // The kernel must not open what the proxy would refuse to dial: loopback, private,
        // metadata and other special addresses only when `allowed_ips` names them.
        const unsafe = feeder !== undefined && coverage.targets.length > 0 ? forbiddenAddressClass(address) : null;
        const out: HostElement[] = [];
        for (const target of coverage.targets) {
          if (!addressAllowed(target, parsed)) continue;
          if (unsafe !== null && target.allowedIps.length === 0) {
            withheld.push(`${address} (${unsafe})`);
            continue;
          }
          for (const port of target.ports) out.push({ endpoint: target.id, address, port });
        }
        elements.set(address, out);
        return out;
      };
      const release: HostElement[] = [];
      for (const family of [4, 6] as const) {
        const ofFamily = order.filter((address) => familyOf.get(address) === family);
        if (ofFamily.length > 0) release.push(...book.record(name, ofFamily, elementsOf, family).release);
      }
      if (withheld.length > 0) {
        emit({
          kind: 'dns',
          host: name,
          port: null,
          allow: true,
          decision: 'allow',
          policy: coverage.targets[0]!.policy,
          reason: `answered, but not opened in the kernel: ${[...new Set(withheld)].join(', ')}; special addresses are opened only where an endpoint's allowed_ips names them`,
          withheld: [...new Set(withheld)],
        });
      }
      if (release.length > 0) feeder?.remove(release).catch(() => undefined); // need not hold the answer back
      if (lastAnswer.size >= COVERAGE_CACHE) lastAnswer = new Map();
      last = { key, elements };
      lastAnswer.set(memoKey, last);
    }
    if (feeder === undefined || coverage.targets.length === 0) return order;
    const timed: TimedHostElement[] = [];
    for (const [address, elements] of last.elements) {
      const timeoutSeconds = Math.max(ttlOf.get(address)!, ttlFloor);
      for (const e of elements) timed.push({ endpoint: e.endpoint, address: e.address, port: e.port, timeoutSeconds });
    }
    if (timed.length > 0) await feeder.add(timed);
    return order;
  };

  /** The answer to one query message, or null to say nothing. */
  const answer = async (message: Buffer, transport: Transport, client: string): Promise<Buffer | null> => {
    const parsed = parseQuery(message);
    if (!parsed.ok) {
      stats.malformed++;
      if (parsed.reply === null) return null;
      return buildReply(parsed.reply.id, parsed.reply.flags, parsed.reply.rcode, parsed.reply.question);
    }
    const query = parsed.query;
    const misused = options.credentials ? placeholdersInHost(query.name, options.credentials.table) : [];
    if (misused.length > 0) return refuseMisuse(query, transport, client, misused);
    const name = canonicalQueryName(query.name);
    const coverage = name === null || query.qclass !== 1 ? null : coverageOf(name);
    if (coverage === null || !coverage.covered) {
      stats.refused++;
      emit(
        dnsEvent(query, transport, client, {
          reason:
            coverage === null
              ? `query for "${query.name}" (${qtypeName(query.qtype)}) is not an Internet-class host name; refused`
              : `${name} is not named by any policy endpoint; DNS query refused`,
          rcode: refusalRcode === RCODE.REFUSED ? 'REFUSED' : 'NXDOMAIN',
        }),
      );
      return buildReply(query.id, query.flags, refusalRcode, query.question);
    }
    let response: Buffer;
    try {
      response =
        transport === 'udp'
          ? await udpUpstream.query(query.question, (id) => buildUpstreamQuery(query, id, 'udp'))
          : await tcpQuery(upstream, query.question, buildUpstreamQuery(query, Math.floor(Math.random() * 65536), 'tcp'), timeoutMs);
    } catch (err) {
      return servfail(query, transport, client, coverage, `upstream failure: ${(err as Error).message}`);
    }
    const match = matchResponse(response, query.question);
    let addresses: string[] = [];
    if (match !== null && match.rcode === RCODE.NOERROR) {
      try {
        addresses = await feed(name!, query.qtype, coverage, response);
      } catch (err) {
        // The answer is only released once its addresses are in the maps; without maps to
        // fill, an answer the proxy cannot read is still the upstream's to give.
        if (coverage.targets.length > 0) {
          return servfail(query, transport, client, coverage, `could not open the answered addresses in nftables: ${(err as Error).message}`);
        }
      }
    }
    stats.forwarded++;
    if (options.auditAnswers) {
      emit(
        dnsEvent(query, transport, client, {
          allow: true,
          decision: 'allow',
          policy: coverage.policies[0] ?? null,
          reason: `forwarded: ${name} is named by policy ${coverage.policies.join(', ')}`,
          rcode: RCODE_NAMES[match?.rcode ?? -1] ?? 'unknown',
          addresses,
        }),
      );
    }
    return withId(response, query.id);
  };

  // A placeholder in a query name is never a host to look up: it is a secret's stand-in on its
  // way out. REFUSED whatever the refusal setting, and audited by the credentials' names only.
  const refuseMisuse = (query: ParsedQuery, transport: Transport, client: string, credentials: string[]): Buffer => {
    stats.refused++;
    const reason = `a DNS query name carries a placeholder of credential ${credentials.map((n) => `"${n}"`).join(', ')}; placeholders are swapped only in requests to the endpoints that bind them, never looked up; refused`;
    emit({ ...dnsEvent(query, transport, client, { reason, rcode: 'REFUSED' }), kind: 'credential_misuse', via: 'dns', host: null, credentials, error: 'credential_not_bound' });
    return buildReply(query.id, query.flags, RCODE.REFUSED, query.question);
  };

  const servfail = (query: ParsedQuery, transport: Transport, client: string, coverage: NameCoverage, reason: string): Buffer => {
    stats.servfail++;
    emit(dnsEvent(query, transport, client, { reason, rcode: 'SERVFAIL', policy: coverage.policies[0] ?? null }));
    return buildReply(query.id, query.flags, RCODE.SERVFAIL, query.question);
  };

  const udpUpstream = await UdpUpstream.open(upstream, timeoutMs);
  const tcpSockets = new Set<net.Socket>();

  const onUdpMessage = (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo): void => {
    answer(message, 'udp', `${remote.address}:${remote.port}`)
      .then((reply) => {
        if (reply !== null) udp.send(reply, remote.port, remote.address);
      })
      .catch(() => undefined);
  };

  const onTcpConnection = (socket: net.Socket): void => {
    if (tcpSockets.size >= maxTcp) {
      socket.destroy();
      return;
    }
    tcpSockets.add(socket);
    socket.on('close', () => tcpSockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setTimeout(idleMs, () => socket.destroy());
    const client = `${socket.remoteAddress}:${socket.remotePort}`;
    let pending: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    let ended = false;
    // A client may half-close after its last query: answer what is in flight, then close.
    const endIfDone = (): void => {
      if (ended && inFlight === 0 && !socket.destroyed) socket.end();
    };
    socket.on('end', () => {
      ended = true;
      endIfDone();
    });
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (length > MAX_TCP_QUERY || inFlight >= MAX_TCP_IN_FLIGHT) {
          socket.destroy();
          return;
        }
        if (pending.length < 2 + length) {
          return;
        }
        const message = Buffer.from(pending.subarray(2, 2 + length));
        pending = pending.subarray(2 + length);
        inFlight++;
        answer(message, 'tcp', client)
          .then((reply) => {
            inFlight--;
            if (reply === null) {
              socket.destroy();
              return;
            }
            if (socket.destroyed) return;
            socket.write(tcpFrame(reply));
            endIfDone();
          })
          .catch(() => socket.destroy());
      }
    });
  };

  let bound: { udp: dgram.Socket; tcp: net.Server };
  try {
    bound = await bindPair(listenHost, options.listen.port, onUdpMessage, onTcpConnection);
  } catch (err) {
    udpUpstream.close();
    throw err;
  }
  const { udp, tcp } = bound;
  const port = udp.address().port;

  return {
    address: { host: listenHost, port },
    stats,
    setPolicies(policies) {
      index = new CoverageIndex(policies);
      coverageCache = new Map();
      lastAnswer = new Map();
      // The new ruleset has new, empty maps: nothing the old answers put there is held.
      book.clearElements();
      feeder?.reset();
    },
    handedOut(address) {
      const canonical = canonicalIpHost(address) ?? address;
      const names = book.namesOf(canonical);
      return names.length === 0 ? undefined : [...names].sort().join(', ');
    },
    async close() {
      flushSuppressed();
      for (const socket of tcpSockets) socket.destroy();
      udpUpstream.close();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

/** UDP and TCP listeners on one port; with port 0, retried until TCP gets the UDP port. */
async function bindPair(
  host: string,
  wantedPort: number,
  onUdpMessage: (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo) => void,
  onTcpConnection: (socket: net.Socket) => void,
): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    udp.on('message', onUdpMessage(udp));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(wantedPort, host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', () => undefined); // a reply to a vanished client must not end the service
    const tcp = net.createServer({ allowHalfOpen: true }, onTcpConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(udp.address().port, host, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      tcp.on('error', () => undefined);
      return { udp, tcp };
    } catch (err) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if (wantedPort !== 0 || attempt >= 20) throw err;
    }
  }
}
