// The nftables script for a sandbox's network namespace. Pure and deterministic: the same
// policies and options give the same bytes.
//
// The ruleset filters in the `output` hook: it is loaded inside the sandbox's own namespace,
// where every packet of interest is one the sandbox's processes originate. The namespace does
// not route for anyone (its processes cannot turn forwarding on without CAP_NET_ADMIN); a
// `forward` chain with policy drop makes that explicit at no cost.
//
// Allows name their endpoint's counter: the lookup that finds a packet counts it there and the
// rule accepts, so a packet costs a few lookups however many endpoints there are. Direct allows
// (CIDR endpoints, IP literals) are looked up as direct.ts says; hostname endpoints through the
// host maps the DNS proxy fills (`address . port` with a timeout).
//
// Direct flows need no connection tracking: the same stateless lookup allows every packet of
// such a flow, and its maps never expire (they change only when the policy is reloaded, and
// then the whole table is replaced). Tracking was the largest cost of a short connection (an
// entry created, confirmed and freed per connection, a lookup per packet). So where the lookup
// is cheap enough to make at every packet (hashed allows, see plan.ts), chains at the raw
// priority, before the tracker, leave exactly these flows untracked: the sandbox's packets
// matched by destination address and port, their replies by source address and port, in the
// same maps. The raw output chain counts the packets it leaves untracked (the lookup that finds
// one counts it), and the output chain accepts them without looking again: such an endpoint's
// counter counts every packet the sandbox sends on its flows, where a tracked one's counts the
// first packet of each connection. Hostname endpoints' TCP connections are left untracked as
// well, through a live set that outlasts their host-map element (live.ts), and so are TCP
// connections to direct allows searched by port (searched once, at the SYN); their counters
// count the first packet of each connection. Everything else stays tracked: UDP to hostname
// endpoints and to searched direct allows, the proxy and the DNS proxy, and the port-443
// redirect to the SNI listener (a DNAT needs the tracker; untracked packets never reach the NAT
// chain, so directly allowed HTTPS keeps its address without a rule there). One thing the
// tracker gave that an untracked flow lacks: an ICMP error the sandbox sends about it (a UDP
// port unreachable to an allowed server) relates to no connection, so the fence refuses it, as
// it refuses any other stray ICMP.
//
// Order in the output chain: established/related first (the cheap, common case), untracked
// packets to their own chain, loopback, the proxy, DNS proxy and SNI listener, then per family
// the allows of new connections (direct allows, then the host map), then the counted reject:
// TCP reset for TCP, ICMP admin-prohibited otherwise, so a bypass fails at once.
import { canonicalIpHost } from '../net/address.js';
import type { Policy } from '../policy/types.js';
import { directChain, directPorts, renderDirect, type DirectRules } from './direct.js';
import { ipKeyword, parseRange, type Family } from './intervals.js';
import { renderLive, SYN_ONLY, type LiveRules } from './live.js';
import { block } from './syntax.js';
import {
  DNS_COUNTER,
  NFT_FAMILY,
  NFT_TABLE,
  PROXY_COUNTER,
  REJECT_COUNTER,
  SNI_COUNTER,
  hostMapName,
} from './names.js';
import { directElements, planKernel, type KernelPlan } from './plan.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface RenderOptions {
  /** The HTTP/CONNECT proxy the sandbox must use (TCP). */
  proxy?: HostPort;
  /** The DNS proxy (UDP and TCP). */
  dns?: HostPort;
  /** The transparent SNI listener: direct TCP/443 not otherwise allowed is redirected there. */
  sni?: HostPort;
}

export class RenderError extends Error {
  override name = 'RenderError';
}

interface Destination {
  family: Family;
  address: string;
  port: number;
}

const TABLE = `${NFT_FAMILY} ${NFT_TABLE}`;
const HTTPS_PORT = 443;
/** The transports allowed by port. */
const TRANSPORTS = ['tcp', 'udp'] as const;
/** IPv6 neighbour discovery and MLD: link plumbing the namespace sends, never egress; never tracked. */
const ICMPV6_PLUMBING = 'nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report';

function destination(what: string, hp: HostPort | undefined): Destination | null {
  if (hp === undefined) return null;
  const address = canonicalIpHost(hp.host);
  if (address === null) throw new RenderError(`${what} address "${hp.host}" must be an IP address`);
  if (!Number.isInteger(hp.port) || hp.port < 1 || hp.port > 65535) {
    throw new RenderError(`${what} port ${hp.port} must be an integer from 1 to 65535`);
  }
  return { family: address.includes(':') ? 6 : 4, address, port: hp.port };
}

const daddr = (family: Family): string => `${ipKeyword(family)} daddr`;

/** True when a direct allow of the plan covers this address and port. */
function directlyAllowed(plan: KernelPlan, d: Destination): boolean {
  const { start } = parseRange(d.address);
  return directElements(plan.direct[d.family]).some((e) => e.port === d.port && e.range.start <= start && start <= e.range.end);
}

/** Each family's direct allows; null for a family without any. */
function directRules(plan: KernelPlan, sni: Destination | null): Record<Family, DirectRules | null> {
  // Replies of connections redirected to the SNI listener must be un-NATed by the tracker: when
  // a direct allow covers the listener itself, its flows stay tracked both ways.
  const tracked = (family: Family): Destination | null => (sni !== null && sni.family === family && directlyAllowed(plan, sni) ? sni : null);
  return { 4: renderDirect(4, plan.direct[4], tracked(4)), 6: renderDirect(6, plan.direct[6], tracked(6)) };
}

function declarations(plan: KernelPlan, direct: Record<Family, DirectRules | null>, live: LiveRules | null): string[] {
  const out: string[] = [];
  const counters = [
    ...plan.counters,
    { name: PROXY_COUNTER, comment: 'proxy' },
    { name: DNS_COUNTER, comment: 'dns proxy' },
    { name: SNI_COUNTER, comment: 'sni listener' },
    { name: REJECT_COUNTER, comment: 'rejected: no allow matched' },
  ];
  for (const c of counters) out.push(...block(`counter ${c.name}`, [`comment "${c.comment}"`]));
  if (plan.hosts.length > 0) {
    for (const family of [4, 6] as const) {
      out.push(...block(`map ${hostMapName(family)}`, [`type ipv${family}_addr . inet_service : counter`, 'flags timeout']));
    }
  }
  for (const family of [4, 6] as const) out.push(...(direct[family]?.declarations ?? []));
  out.push(...(live?.declarations ?? []));
  return out;
}

/**
 * Per family, the allows of new tracked connections: the direct allows, then the host map (a
 * hostname connection comes this way only when the live set is full, see live.ts).
 */
function allowChains(plan: KernelPlan, direct: Record<Family, DirectRules | null>): { lines: string[]; families: Family[] } {
  const lines: string[] = [];
  const families: Family[] = [];
  for (const family of [4, 6] as const) {
    const rules: string[] = [];
    // The direct chain returns here when it finds nothing.
    if (direct[family] !== null) rules.push(`jump ${directChain(family)}`);
    if (plan.hosts.length > 0) rules.push(`counter name ${daddr(family)} . th dport map @${hostMapName(family)} accept`);
    if (rules.length === 0) continue;
    families.push(family);
    lines.push(...block(`chain allow${family}`, rules));
  }
  return { lines, families };
}

/** Families whose direct flows are left untracked. */
const untrackedFamilies = (direct: Record<Family, DirectRules | null>): Family[] => ([4, 6] as const).filter((f) => direct[f]?.untrack !== undefined);

/** The raw output rules by which a searched family admits a new TCP connection to the live set. */
const searchedOpenings = (direct: Record<Family, DirectRules | null>): string[] =>
  ([4, 6] as const).flatMap((f) => (direct[f]?.opening === undefined ? [] : [`meta nfproto ipv${f} ${SYN_ONLY} ${direct[f]!.opening}`]));

/**
 * Raw-priority chains (before the tracker) that leave untracked the hashed direct allows' flows
 * and the live TCP connections (to hostname endpoints and to searched direct allows).
 */
function untrackChains(direct: Record<Family, DirectRules | null>, live: LiveRules | null): string[] {
  const families = untrackedFamilies(direct);
  const lines: string[] = [];
  for (const [hook, port, way, liveRules] of [['output', 'th dport', 'out', live?.rawOut], ['prerouting', 'th sport', 'in', live?.rawIn]] as const) {
    // Only TCP and UDP: `th` reads any transport header, and only these two are allowed by port.
    // A rule each: on this path, for every packet, a comparison costs less than a set lookup.
    // The set of ports spares other traffic the lookups.
    // Packets of live connections first: their set holds only the destinations in use, so a
    // miss there is cheap, where a miss in the direct allows' maps (thousands of blocks) is not.
    const rules = [
      ...(liveRules?.open ?? []),
      ...families.flatMap((f) => TRANSPORTS.map((proto) => `meta nfproto ipv${f} meta l4proto ${proto} ${port} @${directPorts(f)} jump ${direct[f]!.untrack![way]}`)),
      // New connections: the direct allows searched by port, then the host map.
      ...(way === 'out' ? searchedOpenings(direct) : []),
      ...(liveRules?.opening ?? []),
    ];
    if (rules.length === 0) continue;
    lines.push(...block(`chain untrack_${hook}`, [`type filter hook ${hook} priority raw; policy accept;`, ...rules]));
  }
  return lines;
}

/**
 * Untracked packets from the sandbox. TCP and UDP ones are those the raw output chain left
 * untracked, and it does so only to a packet it found allowed (and counted): they are accepted
 * as they come, without the same lookups again (a fifth of the fence's cost per connection).
 * Nothing else in the namespace untracks a packet: loading rules takes CAP_NET_ADMIN, and the
 * tracker itself leaves only neighbour discovery and MLD untracked (ICMPv6), accepted here too;
 * nothing else is.
 */
function untrackedChain(leftUntracked: boolean): string[] {
  const rules = leftUntracked ? TRANSPORTS.map((proto) => `meta l4proto ${proto} accept`) : [];
  rules.push(`icmpv6 type { ${ICMPV6_PLUMBING} } accept`, 'goto refuse');
  return block('chain untracked', rules);
}

/** The fence's one refusal, counted: TCP reset for TCP, ICMP admin-prohibited otherwise. */
function refuseChain(): string[] {
  return block('chain refuse', [`counter name ${REJECT_COUNTER}`, 'meta l4proto tcp reject with tcp reset', 'reject with icmpx admin-prohibited']);
}

function outputChain(families: Family[], proxy: Destination | null, dns: Destination | null, sni: Destination | null): string[] {
  const rules = [
    'type filter hook output priority filter; policy accept;',
    // Most packets belong to established connections or to untracked direct flows: the first
    // two rules end or divert their walk.
    'ct state established,related accept',
    'ct state untracked goto untracked',
    'oif "lo" accept',
  ];
  if (proxy) rules.push(`${daddr(proxy.family)} ${proxy.address} tcp dport ${proxy.port} counter name ${PROXY_COUNTER} accept`);
  if (dns) rules.push(`${daddr(dns.family)} ${dns.address} meta l4proto { tcp, udp } th dport ${dns.port} counter name ${DNS_COUNTER} accept`);
  if (sni) rules.push(`${daddr(sni.family)} ${sni.address} tcp dport ${sni.port} counter name ${SNI_COUNTER} accept`);
  if (families.length > 0) {
    const map = families.map((f) => `ipv${f} : jump allow${f}`).join(', ');
    rules.push(`meta l4proto { tcp, udp } meta nfproto vmap { ${map} }`);
  }
  rules.push('goto refuse');
  return block('chain output', rules);
}

function sniChain(plan: KernelPlan, direct: Record<Family, DirectRules | null>, live: LiveRules | null, sni: Destination, fenceAddresses: Destination[]): string[] {
  const rules = ['type nat hook output priority -100; policy accept;', 'oif "lo" accept', `tcp dport != ${HTTPS_PORT} accept`];
  for (const family of [4, 6] as const) {
    const own = [...new Set(fenceAddresses.filter((d) => d.family === family).map((d) => d.address))].sort();
    if (own.length > 0) rules.push(`${daddr(family)} { ${own.join(', ')} } accept`);
    // Directly allowed HTTPS keeps its own address. Untracked flows never get here; tracked
    // (searched) ones are found in their port's map (only port 443 gets this far).
    const allows = plan.direct[family];
    if (direct[family]?.untrack === undefined && allows.form === 'searched' && allows.pieces.some((e) => e.port === HTTPS_PORT)) {
      rules.push(`${daddr(family)} @direct${family}_${HTTPS_PORT} accept`);
    }
    // Membership in the host map, whichever endpoint owns the element.
    if (plan.hosts.some((host) => host.ports.includes(HTTPS_PORT))) rules.push(`${daddr(family)} . tcp dport @${hostMapName(family)} accept`);
  }
  const target = sni.family === 4 ? `${sni.address}:${sni.port}` : `[${sni.address}]:${sni.port}`;
  // Noted first, so that the live path leaves this connection to the tracker (live.ts).
  const note = live?.noteRedirect ? `${live.noteRedirect} ` : '';
  rules.push(`meta nfproto ipv${sni.family} tcp dport ${HTTPS_PORT} ${note}dnat ip${sni.family === 4 ? '' : '6'} to ${target}`);
  return block('chain sni_redirect', rules);
}

/** One line per IP-literal host left closed: the reader of the script sees why it is missing. */
function withheldComments(plan: KernelPlan): string[] {
  return plan.withheld.map(
    (w) => `# not opened: ${w.address} (${w.cls}) of ${w.endpoint}; the proxy dials a special address only where the endpoint's allowed_ips names it`,
  );
}

/** The whole script: an atomic, idempotent replacement of `table inet portcullis`. */
export function renderRuleset(policies: Policy[], options: RenderOptions = {}): string {
  const proxy = destination('proxy', options.proxy);
  const dns = destination('DNS proxy', options.dns);
  const sni = destination('SNI listener', options.sni);
  const plan = planKernel(policies);
  const direct = directRules(plan, sni);
  const live = plan.hosts.length > 0 || searchedOpenings(direct).length > 0 ? renderLive(sni ? { ...sni, redirectedPort: HTTPS_PORT } : null, plan.hosts.length > 0) : null;
  const allows = allowChains(plan, direct);
  const body = [
    ...declarations(plan, direct, live),
    ...(direct[4]?.chains ?? []),
    ...(direct[6]?.chains ?? []),
    ...(live?.chains ?? []),
    ...allows.lines,
    ...untrackChains(direct, live),
    ...untrackedChain(untrackedFamilies(direct).length > 0 || live !== null),
    ...refuseChain(),
    ...outputChain(allows.families, proxy, dns, sni),
    ...block('chain forward', ['type filter hook forward priority filter; policy drop;']),
  ];
  if (sni) body.push(...sniChain(plan, direct, live, sni, [proxy, dns, sni].filter((d): d is Destination => d !== null)));
  return [
    '#!/usr/sbin/nft -f',
    '# portcullis egress fence, generated from the policy: apply with `nft -f -` in the sandbox namespace.',
    ...withheldComments(plan),
    // Declaring the table first makes the delete succeed when it does not exist yet (no `destroy`
    // in nft 1.0.6); all three statements are one transaction.
    `table ${TABLE}`,
    `delete table ${TABLE}`,
    `table ${TABLE} {`,
    ...body,
    '}',
    '',
  ].join('\n');
}
