// Address ranges and CIDR blocks of the direct allows. Pure.
//
// Every address an endpoint allows directly is a CIDR block (an `allowed_ips` entry, or an IP
// literal as a /32 or /128), and two blocks are either disjoint or one holds the other; two
// endpoints may well hold the same address on the same port (10.0.0.0/8 and 10.1.0.0/16). An
// address is counted once, on the first endpoint (in the stable kernel order) that holds it.
// The kernel finds it one of two ways (plan.ts picks one per family, direct.ts writes it):
// - in hash maps, one per prefix length, most specific first: each block names the first
//   endpoint among those whose blocks hold it, and a block that would name the same one as the
//   block around it is left out (`ownedBlocks`);
// - in interval maps, which refuse overlapping elements: the ranges are cut into disjoint
//   pieces, each owned by the first endpoint that covers it (`disjointRanges`).
import { addressFromBigInt, addressToBigInt, formatAddress as canonicalText, parseRange as parseIpRange } from '../net/address.js';

export type Family = 4 | 6;

export interface AddressRange {
  family: Family;
  /** First and last address, inclusive, as integers. */
  start: bigint;
  end: bigint;
}

export interface OwnedRange extends AddressRange {
  /** Position of the owning endpoint in the kernel order (lower wins). */
  owner: number;
}

/** Bits in an address of each family. */
export const ADDRESS_BITS: Record<Family, number> = { 4: 32, 6: 128 };
/** nft's keyword for a family's header fields: `ip daddr`, `ip6 saddr`. */
export const ipKeyword = (family: Family): string => (family === 4 ? 'ip' : 'ip6');

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/;

/** Range of a canonical CIDR (`a.b.c.d/n`, `x::/n`) or single address. */
export function parseRange(text: string): AddressRange {
  // IPv4 by hand: policies with thousands of CIDRs are compiled. IPv6 through src/net.
  const quad = DOTTED_QUAD.exec(text);
  if (quad !== null) {
    const octets = quad.slice(1, 5).map(Number);
    const bits = quad[5] === undefined ? 32 : Number(quad[5]);
    if (octets.some((o) => o > 255) || bits > 32) throw new Error(`"${text}" is not an IPv4 address or CIDR`);
    const value = BigInt(((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0);
    const hostBits = BigInt(32 - bits);
    const base = (value >> hostBits) << hostBits;
    return { family: 4, start: base, end: base + (1n << hostBits) - 1n };
  }
  const range = text.includes(':') ? parseIpRange(text) : null;
  if (range === null) throw new Error(`"${text}" is not an IP address or CIDR`);
  const [addr, bits] = range;
  const hostBits = BigInt(128 - bits);
  const base = (addressToBigInt(addr) >> hostBits) << hostBits;
  return { family: 6, start: base, end: base + (1n << hostBits) - 1n };
}

export function formatAddress(value: bigint, family: Family): string {
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  return canonicalText(addressFromBigInt(value, 6));
}

/** Prefix length when [start, end] is exactly one CIDR block, else null. */
function prefixLength(range: AddressRange): number | null {
  const size = range.end - range.start + 1n;
  if ((size & (size - 1n)) !== 0n) return null;
  if (range.start % size !== 0n) return null;
  return ADDRESS_BITS[range.family] - (size.toString(2).length - 1);
}

/** nft spelling of a range: an address, a CIDR, or `first-last`. */
export function formatRange(range: AddressRange): string {
  const bits = prefixLength(range);
  const first = formatAddress(range.start, range.family);
  if (bits === ADDRESS_BITS[range.family]) return first;
  if (bits !== null) return `${first}/${bits}`;
  return `${first}-${formatAddress(range.end, range.family)}`;
}

/** Prefix length of a range that is exactly one CIDR block (as `parseRange` returns). */
export function blockBits(range: AddressRange): number {
  const bits = prefixLength(range);
  if (bits === null) throw new Error(`${formatRange(range)} is not a CIDR block`);
  return bits;
}

/** The network mask of a prefix length, in nft's spelling of an address. */
export function formatMask(bits: number, family: Family): string {
  const width = ADDRESS_BITS[family];
  const ones = (1n << BigInt(bits)) - 1n;
  return formatAddress(ones << BigInt(width - bits), family);
}

/** By start; at the same start the larger block first, then the lower owner. */
function outerFirst(a: OwnedRange, b: OwnedRange): number {
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  if (a.end !== b.end) return a.end > b.end ? -1 : 1;
  return a.owner - b.owner;
}

/**
 * The blocks of one family and port, each owned by the lowest owner among the blocks that hold
 * it (itself included), without the blocks that would repeat the owner of the block around
 * them. Sorted by start, larger blocks first. O(n log n).
 */
export function ownedBlocks(blocks: OwnedRange[]): OwnedRange[] {
  const sorted = [...blocks].sort(outerFirst);
  // The blocks around the current one, innermost last, with the owner each was given.
  const around: OwnedRange[] = [];
  const out: OwnedRange[] = [];
  for (const block of sorted) {
    while (around.length > 0 && around[around.length - 1]!.end < block.start) around.pop();
    const outer = around[around.length - 1];
    const owner = outer === undefined ? block.owner : Math.min(block.owner, outer.owner);
    const owned = { ...block, owner };
    if (outer === undefined || owner !== outer.owner) out.push(owned);
    around.push(owned);
  }
  return out;
}

/** A binary min-heap of [owner, end] pairs, by owner. */
class OwnerHeap {
  private items: Array<[number, bigint]> = [];
  push(item: [number, bigint]): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]![0] <= a[i]![0]) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  peek(): [number, bigint] | undefined {
    return this.items[0];
  }
  pop(): void {
    const a = this.items;
    const last = a.pop();
    if (a.length === 0 || last === undefined) return;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l]![0] < a[m]![0]) m = l;
      if (r < a.length && a[r]![0] < a[m]![0]) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i]!, a[m]!];
      i = m;
    }
  }
}

/**
 * Cuts ranges of one family into disjoint pieces, each owned by the lowest owner covering it;
 * adjacent pieces of the same owner are merged. Sorted by start. O(n log n).
 */
export function disjointRanges(ranges: OwnedRange[]): OwnedRange[] {
  if (ranges.length === 0) return [];
  const family = ranges[0]!.family;
  const byStart = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.owner - b.owner));
  const points = new Set<bigint>();
  for (const r of byStart) {
    points.add(r.start);
    points.add(r.end + 1n);
  }
  const boundaries = [...points].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const heap = new OwnerHeap();
  const out: OwnedRange[] = [];
  let next = 0;
  for (let i = 0; i < boundaries.length - 1; i++) {
    const from = boundaries[i]!;
    const to = boundaries[i + 1]! - 1n;
    while (next < byStart.length && byStart[next]!.start === from) {
      heap.push([byStart[next]!.owner, byStart[next]!.end]);
      next++;
    }
    // Ranges ending before this piece can never cover a later one: drop them when they surface.
    while (heap.peek() !== undefined && heap.peek()![1] < from) heap.pop();
    const top = heap.peek();
    if (top === undefined) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.owner === top[0] && last.end + 1n === from) last.end = to;
    else out.push({ family, start: from, end: to, owner: top[0] });
  }
  return out;
}
