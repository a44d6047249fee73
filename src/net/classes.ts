// Address classes: the special ranges (loopback, private, link-local, …), the IPv6 forms that
// embed an IPv4 address, and the addresses no policy may ever open. Pure.
import ipaddr from 'ipaddr.js';
import {
  ADDRESS_BITS,
  addressFromBigInt,
  addressToBigInt,
  familyOf,
  formatAddress,
  MAX_IPV6_TEXT,
  parseAddress,
  parseRange,
  rangeContains,
  type IpAddress,
  type IpFamily,
  type IpRange,
} from './address.js';

function ranges(list: Array<[string, string]>): Array<{ cls: string; range: IpRange }> {
  return list.map(([cidr, cls]) => ({ cls, range: parseRange(cidr)! }));
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

const GLOBAL_UNICAST_V6 = parseRange('2000::/3')!;

/** The special class of an address, or null for an ordinary public (global unicast) one. */
export function addressClass(ip: IpAddress): string | null {
  const classes = ip.kind() === 'ipv4' ? V4_CLASSES : V6_CLASSES;
  for (const { cls, range } of classes) if (rangeContains(range, ip)) return cls;
  // Outside 2000::/3 nothing is assigned for ordinary IPv6 unicast.
  if (ip.kind() === 'ipv6' && !rangeContains(GLOBAL_UNICAST_V6, ip)) return 'reserved';
  const r = ip.range();
  return r === 'unicast' ? null : r;
}

/**
 * The class that makes `address` unsafe to dial, or null for an ordinary public address.
 * Anything that does not parse is "invalid" (and so refused).
 */
export function forbiddenAddressClass(address: string): string | null {
  const ip = parseAddress(address);
  return ip === null ? 'invalid' : addressClass(ip);
}

/**
 * The class that makes `ip` unsafe to reach through a policy, or null when it may be reached:
 * the rule the proxy's SSRF check applies to a dialled address and the kernel's fence to an
 * address it opens directly, so the two can never disagree. `named`: an endpoint that allows the
 * connection names the address in its `allowed_ips`, which exempts it from its class, but never
 * from being the host itself or its links (no policy may open those).
 */
export function unreachableClass(ip: IpAddress, named: boolean): string | null {
  return named ? (neverDeclarableClass(ip)?.cls ?? null) : addressClass(ip);
}

/** What the SSRF rule needs to know of an address, worked out once per address text. */
export interface AddressFacts {
  /** Every spelling that reaches the same host: the address (canonical, first) and each IPv4 address it carries. */
  sameHost: string[];
  /** Its special class, or null for an ordinary public address (`addressClass`). */
  cls: string | null;
  /** The class of the never-declarable set holding it, or null (`neverDeclarableClass`). */
  hostScoped: string | null;
}

// Facts of the addresses seen lately: bounded, and emptied when full (a client cycling through
// addresses costs the full work each, as without it).
const FACTS_MEMO = 4096;
let factsMemo = new Map<string, AddressFacts | null>();

function factsOf(text: string): AddressFacts | null {
  const ip = parseAddress(text);
  if (ip === null) return null;
  return {
    sameHost: [formatAddress(ip), ...embeddedIPv4s(ip).map((e) => formatAddress(e.address))],
    cls: addressClass(ip),
    hostScoped: neverDeclarableClass(ip)?.cls ?? null,
  };
}

/**
 * The facts of an address in a standard spelling, or null when `text` is not one. A connection
 * checks the same few addresses over and over: they are parsed and classified once.
 */
export function addressFacts(text: string): AddressFacts | null {
  if (typeof text !== 'string' || text.length > MAX_IPV6_TEXT) return null;
  let facts = factsMemo.get(text);
  if (facts === undefined) {
    facts = factsOf(text);
    if (factsMemo.size >= FACTS_MEMO) factsMemo = new Map();
    factsMemo.set(text, facts);
  }
  return facts;
}

// ---- IPv6 forms that carry an IPv4 address -------------------------------------------------

/** Where an IPv6 form keeps the 32 bits of an IPv4 address: [first v4 bit, first v6 bit, count]. */
type Placement = Array<[number, number, number]>;

export interface EmbeddingForm {
  name: string;
  /** The IPv6 prefix every address of the form starts with. */
  prefix: IpRange;
  placement: Placement;
  /** Teredo stores its client address with every bit inverted. */
  inverted: boolean;
}

function form(name: string, prefix: string, placement: Placement, inverted = false): EmbeddingForm {
  return { name, prefix: parseRange(prefix)!, placement, inverted };
}

/**
 * Every IPv6 form through which a packet can reach an IPv4 address. The local-use NAT64 prefix
 * (RFC 8215) may be any of RFC 6052's /48, /56, /64 or /96 inside 64:ff9b:1::/48: it is taken in
 * all four (the "u" octet, bits 64–71, is skipped as RFC 6052 says).
 */
export const EMBEDDING_FORMS: readonly EmbeddingForm[] = [
  form('IPv4-mapped', '::ffff:0:0/96', [[0, 96, 32]]),
  form('IPv4-compatible', '::/96', [[0, 96, 32]]),
  form('NAT64', '64:ff9b::/96', [[0, 96, 32]]),
  form('local NAT64 /48', '64:ff9b:1::/48', [[0, 48, 16], [16, 72, 16]]),
  form('local NAT64 /56', '64:ff9b:1::/48', [[0, 56, 8], [8, 72, 24]]),
  form('local NAT64 /64', '64:ff9b:1::/48', [[0, 72, 32]]),
  form('local NAT64 /96', '64:ff9b:1::/48', [[0, 96, 32]]),
  form('6to4', '2002::/16', [[0, 16, 32]]),
  form('Teredo server', '2001::/32', [[0, 32, 32]]),
  form('Teredo client', '2001::/32', [[0, 96, 32]], true),
];

/** The v6 bit (0 = most significant) holding v4 bit `i` in a form. */
function v6BitOf(placement: Placement, i: number): number {
  for (const [v4Start, v6Start, count] of placement) if (i >= v4Start && i < v4Start + count) return v6Start + (i - v4Start);
  throw new Error(`IPv4 bit ${i} has no place`);
}

const bitAt = (width: number, position: number): bigint => 1n << BigInt(width - 1 - position);

/** Each form's prefix as fixed bits, and the v6 bit of each v4 bit: read per dialled address. */
const READERS = EMBEDDING_FORMS.map((f) => {
  const v6Bits = Array.from({ length: 32 }, (_, i) => bitAt(128, v6BitOf(f.placement, i)));
  return { form: f, ...rangePattern(f.prefix), v6Bits };
});

/** The IPv4 address each form would read out of `ip` (several for an address several forms share). */
export function embeddedIPv4s(ip: IpAddress): Array<{ form: string; address: ipaddr.IPv4 }> {
  if (ip.kind() !== 'ipv6') return [];
  const value = addressToBigInt(ip);
  const out: Array<{ form: string; address: ipaddr.IPv4 }> = [];
  for (const { form, value: prefix, mask, v6Bits } of READERS) {
    if ((value & mask) !== prefix) continue;
    let v4 = 0n;
    for (let i = 0; i < 32; i++) if (((value & v6Bits[i]!) !== 0n) !== form.inverted) v4 |= bitAt(32, i);
    out.push({ form: form.name, address: addressFromBigInt(v4, 4) as ipaddr.IPv4 });
  }
  return out;
}

// ---- Addresses no policy may open ----------------------------------------------------------

/**
 * A set of addresses as fixed bits: `x` is in it when `x & mask === value`. A CIDR block is
 * such a set with a contiguous mask; an IPv4 block seen through an embedding form has its bits
 * where the form keeps them.
 */
export interface AddressPattern {
  family: IpFamily;
  value: bigint;
  mask: bigint;
}

export interface NeverDeclarable extends AddressPattern {
  /** loopback, unspecified or link-local. */
  cls: string;
  /** How a message names the set: a CIDR when it is one. */
  text: string;
}

function prefixMask(family: IpFamily, bits: number): bigint {
  const width = ADDRESS_BITS[family];
  return ((1n << BigInt(bits)) - 1n) << BigInt(width - bits);
}

export function rangePattern([ip, bits]: IpRange): AddressPattern {
  const family = familyOf(ip);
  const mask = prefixMask(family, bits);
  return { family, value: addressToBigInt(ip) & mask, mask };
}

/** The pattern's CIDR text when its mask is a prefix, else null. */
function patternCidr(p: AddressPattern): string | null {
  const bits = [...p.mask.toString(2)].filter((c) => c === '1').length;
  return prefixMask(p.family, bits) === p.mask ? `${formatAddress(addressFromBigInt(p.value, p.family))}/${bits}` : null;
}

function embed(f: EmbeddingForm, [v4, bits]: IpRange): AddressPattern {
  const prefix = rangePattern(f.prefix);
  let { value, mask } = prefix;
  const v4Value = addressToBigInt(v4);
  for (let i = 0; i < bits; i++) {
    const bit = bitAt(128, v6BitOf(f.placement, i));
    mask |= bit;
    if (((v4Value & bitAt(32, i)) !== 0n) !== f.inverted) value |= bit;
  }
  return { family: 6, value, mask };
}

// Unspecified is the whole of 0.0.0.0/8 ("this network"): Linux delivers 0.0.0.0 to the host itself.
const HOST_SCOPED_V4: Array<[string, string]> = [
  ['127.0.0.0/8', 'loopback'],
  ['0.0.0.0/8', 'unspecified'],
  ['169.254.0.0/16', 'link-local'],
];
const HOST_SCOPED_V6: Array<[string, string]> = [
  ['::1/128', 'loopback'],
  ['::/128', 'unspecified'],
  ['fe80::/10', 'link-local'],
];

function neverDeclarableSets(): NeverDeclarable[] {
  const out: NeverDeclarable[] = [];
  for (const [cidr, cls] of [...HOST_SCOPED_V4, ...HOST_SCOPED_V6]) out.push({ ...rangePattern(parseRange(cidr)!), cls, text: cidr });
  for (const f of EMBEDDING_FORMS) {
    for (const [cidr, cls] of HOST_SCOPED_V4) {
      const pattern = embed(f, parseRange(cidr)!);
      const asCidr = patternCidr(pattern);
      const text = asCidr !== null
        ? `${asCidr} = ${cidr} in its ${f.name} form`
        : `${f.name} addresses in ${formatAddress(f.prefix[0])}/${f.prefix[1]} that carry ${cidr}`;
      out.push({ ...pattern, cls, text });
    }
  }
  return out;
}

/**
 * The addresses no policy may open, whatever it declares: the host itself (loopback,
 * unspecified), its links (link-local), and every IPv6 form that carries one of those IPv4
 * ranges. Listed direct ranges first, so a message names the plainest one.
 */
export const NEVER_DECLARABLE: readonly NeverDeclarable[] = neverDeclarableSets();

/** Whether two patterns share an address: they agree on every bit both fix. */
export function patternsOverlap(a: AddressPattern, b: AddressPattern): boolean {
  return a.family === b.family && ((a.value ^ b.value) & a.mask & b.mask) === 0n;
}

/** An address in both patterns (they must overlap): `a`'s fixed bits, then `b`'s. */
export function commonAddress(a: AddressPattern, b: AddressPattern): IpAddress {
  return addressFromBigInt(a.value | (b.value & b.mask & ~a.mask), a.family);
}

/** The first never-declarable set that `range` shares an address with, or null. */
export function neverDeclarableOverlap(range: IpRange): NeverDeclarable | null {
  const pattern = rangePattern(range);
  return NEVER_DECLARABLE.find((set) => patternsOverlap(pattern, set)) ?? null;
}

/** The never-declarable set holding `ip`, or null. */
export function neverDeclarableClass(ip: IpAddress): NeverDeclarable | null {
  return neverDeclarableOverlap([ip, ADDRESS_BITS[familyOf(ip)]]);
}
