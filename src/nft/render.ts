// The nftables script for a sandbox's network namespace. Pure and deterministic: the same
// policies and options give the same bytes.
//
// The ruleset filters in the `output` hook: it is loaded inside the sandbox's own namespace,
// where every packet of interest is one the sandbox's processes originate. The namespace does
// not route for anyone (its processes cannot turn forwarding on without CAP_NET_ADMIN); a
// `forward` chain with policy drop makes that explicit at no cost.
//
// Order in the output chain: established/related and loopback first (the cheap, common case),
// then the proxy, DNS proxy and SNI listener, then per family the allows of new connections:
// the direct allows, looked up by port (a hash) and then by address in that port's interval
// map, and the host map the DNS proxy fills for every hostname endpoint (`address . port` with
// a timeout). Every element names the owning endpoint's counter: the lookup that finds it
// counts the packet there and the rule accepts, so a new connection costs a few lookups however
// many endpoints there are. (One interval map keyed by `address . port` would do with one
// lookup, but that lookup reads a bitmap per rule: with 20,000 rules it cost new connections
// several percent of their rate; a hash on the port and a search among that port's ranges cost
// well under one.) Then the counted reject: TCP reset for TCP, ICMP admin-prohibited otherwise,
// so a bypass fails at once.
import { canonicalIpHost } from '../policy/host-pattern.js';
import type { Policy } from '../policy/types.js';
import { formatRange, type Family } from './intervals.js';
import {
  DNS_COUNTER,
  NFT_FAMILY,
  NFT_TABLE,
  PROXY_COUNTER,
  REJECT_COUNTER,
  SNI_COUNTER,
  counterName,
  hostMapName,
} from './names.js';
import { planKernel, type DirectElement, type KernelPlan } from './plan.js';

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
/** IPv6 neighbour discovery and MLD: link plumbing the namespace itself sends, never egress. */
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

const daddr = (family: Family): string => (family === 4 ? 'ip daddr' : 'ip6 daddr');

function elementList(items: string[], indent: string): string[] {
  if (items.length === 0) return [];
  return [`${indent}elements = {`, ...items.map((item, i) => `${indent}\t${item}${i < items.length - 1 ? ',' : ''}`), `${indent}}`];
}

/** Interval map of the addresses directly allowed on one port, each naming its endpoint's counter. */
const directMap = (family: Family, port: number): string => `direct${family}_${port}`;
/** Chain that looks a new connection to `port` up in that port's direct map. */
const portChain = (family: Family, port: number): string => `port${family}_${port}`;

/** A family's direct allows grouped by port, ports ascending (the plan sorts by port, then address). */
function byPort(elements: DirectElement[]): Array<[number, DirectElement[]]> {
  const groups = new Map<number, DirectElement[]>();
  for (const e of elements) {
    const group = groups.get(e.port);
    if (group === undefined) groups.set(e.port, [e]);
    else group.push(e);
  }
  return [...groups];
}

function declarations(plan: KernelPlan): string[] {
  const out: string[] = [];
  const counters = [
    ...plan.counters,
    { name: PROXY_COUNTER, comment: 'proxy' },
    { name: DNS_COUNTER, comment: 'dns proxy' },
    { name: SNI_COUNTER, comment: 'sni listener' },
    { name: REJECT_COUNTER, comment: 'rejected: no allow matched' },
  ];
  for (const c of counters) out.push(`\tcounter ${c.name} {`, `\t\tcomment "${c.comment}"`, '\t}');
  if (plan.hosts.length > 0) {
    for (const family of [4, 6] as const) {
      out.push(`\tmap ${hostMapName(family)} {`, `\t\ttype ipv${family}_addr . inet_service : counter`, '\t\tflags timeout', '\t}');
    }
  }
  for (const family of [4, 6] as const) {
    const ports = byPort(plan.direct[family]);
    if (ports.length === 0) continue;
    for (const [port, elements] of ports) {
      out.push(
        `\tmap ${directMap(family, port)} {`,
        `\t\ttype ipv${family}_addr : counter`,
        '\t\tflags interval',
        ...elementList(elements.map((e) => `${formatRange(e.range)} : "${counterName(e.id)}"`), '\t\t'),
        '\t}',
      );
    }
    out.push(
      `\tmap ports${family} {`,
      '\t\ttype inet_service : verdict',
      ...elementList(ports.map(([port]) => `${port} : jump ${portChain(family, port)}`), '\t\t'),
      '\t}',
    );
  }
  return out;
}

function familyChains(plan: KernelPlan): { lines: string[]; families: Family[] } {
  const lines: string[] = [];
  const families: Family[] = [];
  for (const family of [4, 6] as const) {
    const rules: string[] = [];
    const ports = byPort(plan.direct[family]);
    for (const [port] of ports) {
      lines.push(`\tchain ${portChain(family, port)} {`, `\t\tcounter name ${daddr(family)} map @${directMap(family, port)} accept`, '\t}');
    }
    // A port chain that finds no address returns here, to the host map.
    if (ports.length > 0) rules.push(`\t\tth dport vmap @ports${family}`);
    if (plan.hosts.length > 0) rules.push(`\t\tcounter name ${daddr(family)} . th dport map @${hostMapName(family)} accept`);
    if (rules.length === 0) continue;
    families.push(family);
    lines.push(`\tchain allow${family} {`, ...rules, '\t}');
  }
  return { lines, families };
}

function outputChain(families: Family[], proxy: Destination | null, dns: Destination | null, sni: Destination | null): string[] {
  const rules = [
    'type filter hook output priority filter; policy accept;',
    // Most packets belong to established connections: the first rule ends their walk.
    'ct state established,related accept',
    'oif "lo" accept',
    `icmpv6 type { ${ICMPV6_PLUMBING} } accept`,
  ];
  if (proxy) rules.push(`${daddr(proxy.family)} ${proxy.address} tcp dport ${proxy.port} counter name ${PROXY_COUNTER} accept`);
  if (dns) rules.push(`${daddr(dns.family)} ${dns.address} meta l4proto { tcp, udp } th dport ${dns.port} counter name ${DNS_COUNTER} accept`);
  if (sni) rules.push(`${daddr(sni.family)} ${sni.address} tcp dport ${sni.port} counter name ${SNI_COUNTER} accept`);
  if (families.length > 0) {
    const map = families.map((f) => `ipv${f} : jump allow${f}`).join(', ');
    rules.push(`meta l4proto { tcp, udp } meta nfproto vmap { ${map} }`);
  }
  rules.push(`counter name ${REJECT_COUNTER}`, 'meta l4proto tcp reject with tcp reset', 'reject with icmpx admin-prohibited');
  return ['\tchain output {', ...rules.map((r) => `\t\t${r}`), '\t}'];
}

function sniChain(plan: KernelPlan, sni: Destination, fenceAddresses: Destination[]): string[] {
  const rules = ['type nat hook output priority -100; policy accept;', 'oif "lo" accept', `tcp dport != ${HTTPS_PORT} accept`];
  for (const family of [4, 6] as const) {
    const own = [...new Set(fenceAddresses.filter((d) => d.family === family).map((d) => d.address))].sort();
    if (own.length > 0) rules.push(`${daddr(family)} { ${own.join(', ')} } accept`);
    // Direct-allowed HTTPS keeps its own address (only port 443 gets this far).
    if (plan.direct[family].some((e) => e.port === HTTPS_PORT)) rules.push(`${daddr(family)} @${directMap(family, HTTPS_PORT)} accept`);
    // Membership in the host map, whichever endpoint owns the element.
    if (plan.hosts.some((host) => host.ports.includes(HTTPS_PORT))) rules.push(`${daddr(family)} . tcp dport @${hostMapName(family)} accept`);
  }
  const target = sni.family === 4 ? `${sni.address}:${sni.port}` : `[${sni.address}]:${sni.port}`;
  rules.push(`meta nfproto ipv${sni.family} tcp dport ${HTTPS_PORT} dnat ip${sni.family === 4 ? '' : '6'} to ${target}`);
  return ['\tchain sni_redirect {', ...rules.map((r) => `\t\t${r}`), '\t}'];
}

/** The whole script: an atomic, idempotent replacement of `table inet portcullis`. */
export function renderRuleset(policies: Policy[], options: RenderOptions = {}): string {
  const proxy = destination('proxy', options.proxy);
  const dns = destination('DNS proxy', options.dns);
  const sni = destination('SNI listener', options.sni);
  const plan = planKernel(policies);
  const { lines: chains, families } = familyChains(plan);
  const body = [
    ...declarations(plan),
    ...chains,
    ...outputChain(families, proxy, dns, sni),
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy drop;',
    '\t}',
  ];
  if (sni) body.push(...sniChain(plan, sni, [proxy, dns, sni].filter((d): d is Destination => d !== null)));
  return [
    '#!/usr/sbin/nft -f',
    '# portcullis egress fence, generated from the policy: apply with `nft -f -` in the sandbox namespace.',
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
