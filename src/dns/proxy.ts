// The DNS proxy (I/O): UDP and TCP on one port. A query for a name some policy endpoint names
// is forwarded upstream; any other name is refused (REFUSED, or NXDOMAIN if configured) with a
// `dns` audit event, which also stops exfiltration through queries under foreign domains. For
// names an any-binary policy covers, every answered address goes into the nft host maps before
// the answer is released, so the client's first connection cannot race the rule.
import dgram from 'node:dgram';
import net from 'node:net';
import { canonicalIpHost } from '../net/address.js';
import type { Policy } from '../policy/types.js';
import type { SwapTable } from '../credentials/swap.js';
import type { AuditSink } from '../audit/sink.js';
import type { NftSetFeeder } from '../nft/set-feeder.js';
import { AnswerFeeder } from './answer-feeder.js';
import { DnsAuditLimiter } from './audit-limiter.js';
import { HandedOutBook } from './handed-out.js';
import { QueryAnswerer, type DnsProxyStats } from './query-answerer.js';
import { serveTcpConnection } from './tcp-connection.js';
import { UdpUpstream, type UpstreamAddress } from './upstream.js';
import { RCODE } from './wire.js';

export type { DnsProxyStats } from './query-answerer.js';

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

const AUDIT_PER_SECOND = 1000;

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
  const maxTcp = options.maxTcpConnections ?? 128;
  const idleMs = options.tcpIdleTimeoutMs ?? 10_000;
  const audit = new DnsAuditLimiter(options.audit, AUDIT_PER_SECOND);
  const emit = audit.emit.bind(audit);
  const book = new HandedOutBook(options.maxAddressesPerName ?? 16);
  const stats: DnsProxyStats = { forwarded: 0, refused: 0, malformed: 0, servfail: 0 };
  const answers = new AnswerFeeder({ book, feeder: options.feeder, ttlFloorSeconds: options.ttlFloorSeconds ?? 30, emit });
  const udpUpstream = await UdpUpstream.open(upstream, timeoutMs);
  const answerer = new QueryAnswerer({
    policies: options.policies,
    refusalRcode: options.refusal === 'nxdomain' ? RCODE.NXDOMAIN : RCODE.REFUSED,
    udpUpstream,
    upstream,
    timeoutMs,
    answers,
    emit,
    stats,
    auditAnswers: options.auditAnswers === true,
    ...(options.credentials ? { credentials: options.credentials } : {}),
  });

  const tcpSockets = new Set<net.Socket>();
  const onUdpMessage = (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo): void => {
    answerer
      .answer(message, 'udp', `${remote.address}:${remote.port}`)
      .then((reply) => {
        if (reply !== null) udp.send(reply, remote.port, remote.address);
      })
      .catch(() => undefined);
  };
  const onTcpConnection = (socket: net.Socket): void => {
    if (tcpSockets.size >= maxTcp) return void socket.destroy();
    tcpSockets.add(socket);
    socket.on('close', () => tcpSockets.delete(socket));
    const client = `${socket.remoteAddress}:${socket.remotePort}`;
    serveTcpConnection(socket, (message) => answerer.answer(message, 'tcp', client), idleMs);
  };

  let bound: { udp: dgram.Socket; tcp: net.Server };
  try {
    bound = await bindPair(listenHost, options.listen.port, onUdpMessage, onTcpConnection);
  } catch (err) {
    udpUpstream.close();
    throw err;
  }
  const { udp, tcp } = bound;
  return {
    address: { host: listenHost, port: udp.address().port },
    stats,
    setPolicies(policies) {
      answerer.setPolicies(policies);
      answers.reset();
      // The new ruleset has new, empty maps: nothing the old answers put there is held.
      book.clearElements();
      options.feeder?.reset();
    },
    handedOut(address) {
      const names = book.namesOf(canonicalIpHost(address) ?? address);
      return names.length === 0 ? undefined : [...names].sort().join(', ');
    },
    async close() {
      audit.flush();
      for (const socket of tcpSockets) socket.destroy();
      udpUpstream.close();
      await Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
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
