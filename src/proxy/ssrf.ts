// SSRF address classes: which resolved addresses the proxy refuses to dial unless an
// endpoint's `allowed_ips` names them. Pure.
import ipaddr from 'ipaddr.js';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

function ranges(list: Array<[string, string]>): Array<{ cls: string; range: Range }> {
  return list.map(([cidr, cls]) => ({ cls, range: ipaddr.parseCIDR(cidr) as Range }));
}

// Explicit lists, checked before ipaddr.js's own range() so the classes are ours and stable.
const V4_CLASSES = ranges([
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved'],
]);

const V6_CLASSES = ranges([
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::ffff:0:0/96', 'ipv4-mapped'],
  ['::/96', 'ipv4-compatible'],
  ['64:ff9b::/96', 'nat64'],
  ['64:ff9b:1::/48', 'nat64'],
  ['100::/64', 'discard'],
  ['2001::/32', 'teredo'],
  ['2001:db8::/32', 'documentation'],
  ['2001:10::/28', 'reserved'],
  ['2001:20::/28', 'reserved'],
  ['2002::/16', '6to4'],
  ['3fff::/20', 'documentation'],
  ['fc00::/7', 'unique-local'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['ff00::/8', 'multicast'],
]);

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3') as Range;

/**
 * The class that makes `address` unsafe to dial, or null for an ordinary public address.
 * Anything that does not parse is "invalid" (and so refused).
 */
export function forbiddenAddressClass(address: string): string | null {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return 'invalid';
  }
  if (ip.kind() === 'ipv4') {
    for (const { cls, range } of V4_CLASSES) if (ip.match(range)) return cls;
    const r = ip.range();
    return r === 'unicast' ? null : r;
  }
  for (const { cls, range } of V6_CLASSES) if (ip.match(range)) return cls;
  // Outside 2000::/3 nothing is assigned for ordinary unicast.
  if (!ip.match(GLOBAL_UNICAST_V6)) return 'reserved';
  const r = ip.range();
  return r === 'unicast' ? null : r;
}

/** Canonical spelling, so own-address comparisons are exact. */
export function canonicalAddress(address: string): string {
  try {
    const ip = ipaddr.parse(address);
    return ip.toString();
  } catch {
    return address;
  }
}

export interface SsrfVerdict {
  ok: boolean;
  /** The first refused address and its class. */
  address?: string;
  cls?: string;
}

/**
 * Checks every address: refused when one is in a forbidden class (unless `explicit` says the
 * policy named it in allowed_ips) or is one of the proxy's own addresses (always).
 */
export function checkAddresses(addresses: string[], ownAddresses: ReadonlySet<string>, explicit: boolean): SsrfVerdict {
  for (const address of addresses) {
    const canonical = canonicalAddress(address);
    if (ownAddresses.has(canonical)) return { ok: false, address: canonical, cls: 'proxy-own-address' };
    if (explicit) continue;
    const cls = forbiddenAddressClass(canonical);
    if (cls !== null) return { ok: false, address: canonical, cls };
  }
  return { ok: true };
}
