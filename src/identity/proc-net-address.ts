// Addresses as /proc/net/tcp{,6} spells them, and back. Pure.
//
// The kernel prints each 32-bit word of an address with %08X on the raw (network-order) value,
// so on a little-endian machine the bytes of every word come out reversed: 127.0.0.1 is
// "0100007F". IPv6 is four such words. Ports are printed in host order (%04X).
//
// Addresses come out in the one canonical form of src/net/address.ts, seen as a socket sees
// them: an IPv4-mapped address is its IPv4 address (tcp6 lists v4 peers of dual-stack sockets so).
import { endianness } from 'node:os';
import { addressFromBytes, formatAddress, parseAddress, unmapIPv4 } from '../net/address.js';

export type TableFamily = 'tcp' | 'tcp6';

export interface Endpoint {
  address: string;
  port: number;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** An address reduced to its canonical form: IPv4-mapped IPv6 becomes IPv4, zones are dropped. */
export interface CanonicalAddress {
  kind: 'ipv4' | 'ipv6';
  bytes: number[];
  text: string;
}

/** Parses an address as a socket reports it; null when it is not an IP address. */
export function canonicalAddress(text: string): CanonicalAddress | null {
  if (typeof text !== 'string') return null; // e.g. a destroyed socket's remoteAddress
  // The common case, checked per connection, skips the general parser.
  const dotted = dottedQuad(text.startsWith('::ffff:') ? text.slice(7) : text);
  if (dotted) return dotted;
  const parsed = parseAddress(text.replace(/%.*$/, ''));
  if (parsed === null) return null;
  const ip = unmapIPv4(parsed);
  return { kind: ip.kind(), bytes: ip.toByteArray(), text: formatAddress(ip) };
}

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The common case, an IPv4 address in its canonical dotted form (as sockets report it), without the general parser. */
function dottedQuad(text: string): CanonicalAddress | null {
  const m = DOTTED_QUAD.exec(text);
  if (!m) return null;
  const bytes = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  // Leading zeros or out-of-range parts are not canonical: the general parser decides those.
  if (bytes.some((b, i) => b > 255 || String(b) !== m[i + 1])) return null;
  return { kind: 'ipv4', bytes, text: bytes.join('.') };
}

function hexByte(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}

function encodeWords(bytes: number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    const word = bytes.slice(i, i + 4);
    out += (LITTLE_ENDIAN ? word.reverse() : word).map(hexByte).join('');
  }
  return out;
}

/** IPv4 bytes as the tcp6 table spells an IPv4-mapped address (::ffff:a.b.c.d). */
function mappedBytes(v4: number[]): number[] {
  return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
}

/** `ADDR:PORT` in the given table's spelling, or null when the address cannot appear there. */
export function encodeEndpoint(address: CanonicalAddress, port: number, family: TableFamily): string | null {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  if (family === 'tcp') return address.kind === 'ipv4' ? `${encodeWords(address.bytes)}:${portHex}` : null;
  const bytes = address.kind === 'ipv4' ? mappedBytes(address.bytes) : address.bytes;
  return `${encodeWords(bytes)}:${portHex}`;
}

/** Decodes `HEX:PORT` from either table; IPv4-mapped IPv6 comes back as IPv4. Null if malformed. */
export function decodeEndpoint(text: string): Endpoint | null {
  const match = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(text);
  if (!match) return null;
  const hex = match[1]!;
  const bytes: number[] = [];
  for (let i = 0; i < hex.length; i += 8) {
    const word: number[] = [];
    for (let j = 0; j < 8; j += 2) word.push(parseInt(hex.slice(i + j, i + j + 2), 16));
    bytes.push(...(LITTLE_ENDIAN ? word.reverse() : word));
  }
  return { address: formatAddress(unmapIPv4(addressFromBytes(bytes))), port: parseInt(match[2]!, 16) };
}

/** `a.b.c.d:p` or `[v6]:p`, for messages and the CLI. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}
