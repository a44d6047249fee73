// What the kernel can enforce of a policy, before any nft syntax. Pure.
//
// Only endpoints of policies without binaries (and without L7 rules) reach the kernel, as in
// `kernelEndpoints`. Each becomes either a direct allow of `address . port` (hostless
// `allowed_ips`, or a host that is an IP literal) or a hostname endpoint whose addresses the DNS
// proxy puts into the host maps.
// The direct allows follow the engine exactly: a hostless endpoint allows every address of its
// `allowed_ips`; an IP-literal host allows that address, and only when its own `allowed_ips`
// (if any) cover it. A hostname endpoint with `allowed_ips` goes through the host maps, never a
// CIDR allow: the engine would deny an IP literal sent there.
// And they follow the proxy's SSRF check: an IP-literal host in a special range (private,
// link-local, documentation, an IPv6 form carrying an IPv4 address, …) is opened only when its
// own `allowed_ips` names it, as the proxy dials it only then (src/net `unreachableClass`).
// Hostless `allowed_ips` name their addresses by definition, and the loader refuses any that
// reach the host itself or its links.

import { parseAddress } from '../net/address.js';
import { unreachableClass } from '../net/classes.js';
import type { Policy } from '../policy/types.js';
import { blockBits, disjointRanges, ownedBlocks, parseRange, type AddressRange, type Family, type OwnedRange } from './intervals.js';
import { counterComment, counterName, kernelEndpoints, usesHostMaps, type KernelEndpoint } from './names.js';

export interface DirectElement {
  range: AddressRange;
  port: number;
  /** Kernel endpoint id whose counter the element names. */
  id: string;
}

export interface DirectBlock extends DirectElement {
  /** The prefix length of `range`, a CIDR block. */
  bits: number;
}

/**
 * A family's direct allows, in the form the kernel will look them up in:
 * - `hashed`: CIDR blocks for hash maps keyed by `network . port`, one map per prefix length,
 *   sorted by prefix length (longest first), address, port;
 * - `searched`: disjoint pieces for an interval map per port, sorted by port, then address.
 */
export type DirectAllows = { form: 'hashed'; blocks: DirectBlock[] } | { form: 'searched'; pieces: DirectElement[] };

/**
 * Most prefix lengths a family's direct allows may have and still be hashed. Hashed allows are
 * looked up at every packet (their flows are not tracked, see render.ts), and a packet that no
 * map holds costs a lookup per length: on a port shared with hostname endpoints, every packet
 * of theirs. Measured on a 2-core machine with 10,000 CIDR endpoints on one port: of one
 * length, hashing raised direct flows' connection rate by about 14% and cost hostname flows
 * about 1%; of 17 lengths, it gained direct flows nothing and cost hostname flows 15%. Beyond
 * this, a search among a port's ranges at the first packet of each connection costs less.
 */
export const MAX_HASHED_LENGTHS = 3;

export interface HostEndpoint {
  id: string;
  ports: number[];
}

/** An IP-literal host the kernel leaves closed although the engine allows it: the proxy would refuse to dial it. */
export interface WithheldLiteral {
  id: string;
  /** `policy/endpoint-index`, as its counter's comment. */
  endpoint: string;
  address: string;
  /** Its special class (`link-local`, `private`, …). */
  cls: string;
}

export interface KernelPlan {
  /** One counter per kernel endpoint, in kernel order. */
  counters: Array<{ name: string; comment: string }>;
  /** Direct allows per family. */
  direct: Record<Family, DirectAllows>;
  /** Ids of endpoints with at least one direct element, in kernel order. */
  directIds: string[];
  /** Endpoints allowed through the host maps, in kernel order. */
  hosts: HostEndpoint[];
  /** IP-literal hosts left closed for their class, in kernel order. */
  withheld: WithheldLiteral[];
}

function contains(outer: AddressRange, inner: AddressRange): boolean {
  return outer.family === inner.family && outer.start <= inner.start && inner.end <= outer.end;
}

/** What an endpoint allows directly: CIDR blocks (none for hostname endpoints), or why its literal host stays closed. */
export function directRanges(ke: KernelEndpoint): { ranges: AddressRange[]; withheld?: WithheldLiteral } {
  const ep = ke.endpoint;
  if (usesHostMaps(ep)) return { ranges: [] };
  const cidrs = ep.allowed_ips.map(parseRange);
  if (ep.host === null) return { ranges: cidrs };
  const literal = parseRange(ep.host);
  const named = cidrs.some((c) => contains(c, literal));
  if (cidrs.length > 0 && !named) return { ranges: [] };
  // The host is canonical (usesHostMaps found it an IP literal).
  const cls = unreachableClass(parseAddress(ep.host)!, named);
  if (cls !== null) return { ranges: [], withheld: { id: ke.id, endpoint: counterComment(ke.policy, ke.index), address: ep.host, cls } };
  return { ranges: [literal] };
}

/** The elements of a family's direct allows, whatever their form. */
export function directElements(allows: DirectAllows): DirectElement[] {
  return allows.form === 'hashed' ? allows.blocks : allows.pieces;
}

function byLengthAddressPort(a: DirectBlock, b: DirectBlock): number {
  return b.bits - a.bits || (a.range.start < b.range.start ? -1 : a.range.start > b.range.start ? 1 : 0) || a.port - b.port;
}

export function planKernel(policies: Policy[]): KernelPlan {
  const endpoints = kernelEndpoints(policies);
  // The blocks of each family and port (key: family * 65536 + port): owners are settled per port.
  const byFamilyPort = new Map<number, OwnedRange[]>();
  const hosts: HostEndpoint[] = [];
  const withheld: WithheldLiteral[] = [];
  for (const [order, ke] of endpoints.entries()) {
    if (usesHostMaps(ke.endpoint)) {
      hosts.push({ id: ke.id, ports: [...ke.endpoint.ports] });
      continue;
    }
    const direct = directRanges(ke);
    if (direct.withheld !== undefined) withheld.push(direct.withheld);
    for (const range of direct.ranges) {
      for (const port of ke.endpoint.ports) {
        const key = range.family * 65536 + port;
        const list = byFamilyPort.get(key) ?? [];
        list.push({ ...range, owner: order });
        byFamilyPort.set(key, list);
      }
    }
  }
  const keys = [...byFamilyPort.keys()].sort((a, b) => a - b);
  const familyOf = (key: number): Family => Math.floor(key / 65536) as Family;
  const element = (key: number, { owner, ...range }: OwnedRange): DirectElement => ({ range, port: key % 65536, id: endpoints[owner]!.id });
  const blocks: Record<Family, DirectBlock[]> = { 4: [], 6: [] };
  const owners = new Set<number>();
  for (const key of keys) {
    for (const block of ownedBlocks(byFamilyPort.get(key)!)) {
      owners.add(block.owner);
      blocks[familyOf(key)].push({ ...element(key, block), bits: blockBits(block) });
    }
  }
  const direct = {} as Record<Family, DirectAllows>;
  for (const family of [4, 6] as const) {
    if (new Set(blocks[family].map((b) => b.bits)).size <= MAX_HASHED_LENGTHS) {
      direct[family] = { form: 'hashed', blocks: blocks[family].sort(byLengthAddressPort) };
      continue;
    }
    const pieces: DirectElement[] = [];
    for (const key of keys.filter((k) => familyOf(k) === family)) {
      for (const piece of disjointRanges(byFamilyPort.get(key)!)) pieces.push(element(key, piece));
    }
    direct[family] = { form: 'searched', pieces };
  }
  return {
    counters: endpoints.map((ke) => ({ name: counterName(ke.id), comment: counterComment(ke.policy, ke.index) })),
    direct,
    directIds: endpoints.filter((_, order) => owners.has(order)).map((ke) => ke.id),
    hosts,
    withheld,
  };
}
