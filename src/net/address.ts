// IP addresses in their one canonical form. Pure.
//
// Every part of portcullis that compares addresses (the policy loader, the proxy's SSRF and
// own-address checks, the DNS proxy, the nft compiler, identity) compares the text this module
// gives, so two spellings of one address can never look like two addresses:
// - IPv4: dotted decimal, four parts, no leading zeros (`10.0.0.1`);
// - IPv6: RFC 5952 (lower case, the first longest run of zero groups compressed), an embedded
//   IPv4 address written in hex (`::ffff:7f00:1`), no zone.
// Only standard spellings parse here; the lenient spellings a C library accepts in a request
// host (`127.1`, `0x7f.1`) are ip-literal.ts's business.
import ipaddr from 'ipaddr.js';

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;
export type IpFamily = 4 | 6;
/** An address and a prefix length: a CIDR block (the address need not be its first). */
export type IpRange = [IpAddress, number];

/** Bits in an address of each family. */
export const ADDRESS_BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };

const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const EMBEDDED_QUAD = /^(.*:)([^:]*\.[^:]*)$/;
const HEX_GROUPS = /^[0-9a-f:]+$/i;
const PREFIX_LENGTH = /^\d{1,3}$/;

export function familyOf(ip: IpAddress): IpFamily {
  return ip.kind() === 'ipv4' ? 4 : 6;
}

function parseIPv4(text: string): ipaddr.IPv4 | null {
  const quad = DOTTED_QUAD.exec(text);
  if (quad === null) return null;
  const octets = [Number(quad[1]), Number(quad[2]), Number(quad[3]), Number(quad[4])];
  return octets.every((o) => o <= 255) ? new ipaddr.IPv4(octets) : null;
}

function parseIPv6(text: string): ipaddr.IPv6 | null {
  let hex = text;
  // ipaddr.js reads `::a.b.c.d` (IPv4-compatible) as `::ffff:a.b.c.d` (IPv4-mapped), another
  // address: write the embedded IPv4 in hex first, so RFC 4291's meaning is the one parsed.
  const embedded = EMBEDDED_QUAD.exec(text);
  if (embedded !== null) {
    const v4 = parseIPv4(embedded[2]!);
    if (v4 === null) return null;
    const [a, b, c, d] = v4.octets as [number, number, number, number];
    hex = `${embedded[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  if (!HEX_GROUPS.test(hex)) return null;
  try {
    return ipaddr.IPv6.parse(hex);
  } catch {
    return null;
  }
}

/** Parses an address in a standard spelling (no zone, no brackets); null otherwise. */
export function parseAddress(text: string): IpAddress | null {
  if (typeof text !== 'string') return null;
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text);
}

/** The canonical text of a parsed address. */
export function formatAddress(ip: IpAddress): string {
  return ip.toString();
}

/**
 * Whether `text` is an IPv4 address in its canonical spelling (`10.0.0.1`: four decimal parts
 * up to 255, no leading zeros): what a socket and a resolver give, so the common case of every
 * per-connection check. Read by hand, no parser, no regular expression.
 */
export function isCanonicalIPv4(text: string): boolean {
  const length = text.length;
  if (length < 7 || length > 15) return false;
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= length; i++) {
    const c = i === length ? 46 : text.charCodeAt(i);
    if (c === 46) {
      // "." ends a part: one to three digits, no leading zero, at most 255.
      if (digits === 0 || value > 255 || ++parts > 4) return false;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return false;
      value = value * 10 + (c - 48);
      digits++;
    } else return false;
  }
  return parts === 4;
}

// IPv6 texts seen lately and their canonical form (null: not an address). Bounded, and emptied
// when full: a client that cycles through addresses costs a parse each, as without it.
const CANONICAL_V6_MEMO = 4096;
/** The longest standard spelling of an IPv6 address (eight groups, or six and an IPv4 address); longer text is never remembered. */
export const MAX_IPV6_TEXT = 45;
let canonicalV6 = new Map<string, string | null>();

/** Canonical text of an address in a standard spelling, or null when `text` is not one. */
export function canonicalAddress(text: string): string | null {
  if (typeof text !== 'string') return null;
  if (isCanonicalIPv4(text)) return text;
  if (!text.includes(':') || text.length > MAX_IPV6_TEXT) return canonicalOf(text);
  let canonical = canonicalV6.get(text);
  if (canonical === undefined) {
    canonical = canonicalOf(text);
    if (canonicalV6.size >= CANONICAL_V6_MEMO) canonicalV6 = new Map();
    canonicalV6.set(text, canonical);
  }
  return canonical;
}

function canonicalOf(text: string): string | null {
  const ip = parseAddress(text);
  return ip === null ? null : formatAddress(ip);
}

/** Canonical form of an IP literal used as a host (`[v6]` brackets allowed), or null. */
export function canonicalIpHost(text: string): string | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  return canonicalAddress(bare);
}

/** Whether `ip` is an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isIPv4Mapped(ip: IpAddress): ip is ipaddr.IPv6 {
  return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress();
}

/**
 * The address a socket means: an IPv4-mapped IPv6 address (a v4 peer of a dual-stack socket)
 * is that IPv4 address.
 */
export function unmapIPv4(ip: IpAddress): IpAddress {
  return isIPv4Mapped(ip) ? ip.toIPv4Address() : ip;
}

/** An address of either family from its bytes (4 or 16, network order). */
export function addressFromBytes(bytes: number[]): IpAddress {
  return ipaddr.fromByteArray(bytes);
}

/** An address as an unsigned integer of its family's width. */
export function addressToBigInt(ip: IpAddress): bigint {
  let value = 0n;
  for (const byte of ip.toByteArray()) value = (value << 8n) | BigInt(byte);
  return value;
}

export function addressFromBigInt(value: bigint, family: IpFamily): IpAddress {
  const bytes = new Array<number>(ADDRESS_BITS[family] / 8).fill(0);
  let rest = value;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return ipaddr.fromByteArray(bytes);
}

/** `ADDR/BITS` with ADDR in a standard spelling, or a single address (a /32 or /128); null otherwise. */
export function parseRange(text: string): IpRange | null {
  const slash = text.indexOf('/');
  const ip = parseAddress(slash === -1 ? text : text.slice(0, slash));
  if (ip === null) return null;
  const width = ADDRESS_BITS[familyOf(ip)];
  if (slash === -1) return [ip, width];
  const bitsText = text.slice(slash + 1);
  if (!PREFIX_LENGTH.test(bitsText) || Number(bitsText) > width) return null;
  return [ip, Number(bitsText)];
}

/** The first address of a range. */
export function networkAddress([ip, bits]: IpRange): IpAddress {
  const family = familyOf(ip);
  const hostBits = BigInt(ADDRESS_BITS[family] - bits);
  return addressFromBigInt((addressToBigInt(ip) >> hostBits) << hostBits, family);
}

/** Canonical text of a range: its first address and prefix length (`10.20.0.0/16`). */
export function formatRange(range: IpRange): string {
  return `${formatAddress(networkAddress(range))}/${range[1]}`;
}

/** Whether `ip` lies inside `range` (never across families). */
export function rangeContains(range: IpRange, ip: IpAddress): boolean {
  return range[0].kind() === ip.kind() && (ip as ipaddr.IPv4).match(range as [ipaddr.IPv4, number]);
}
