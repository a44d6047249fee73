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

import type { Policy } from '../policy/types.js';
import { disjointRanges, parseRange, type AddressRange, type Family, type OwnedRange } from './intervals.js';
import { counterComment, counterName, kernelEndpoints, usesHostMaps, type KernelEndpoint } from './names.js';

export interface DirectElement {
  range: AddressRange;
  port: number;
  /** Kernel endpoint id owning this piece. */
  id: string;
}

export interface HostEndpoint {
  id: string;
  ports: number[];
}

export interface KernelPlan {
  /** One counter per kernel endpoint, in kernel order. */
  counters: Array<{ name: string; comment: string }>;
  /** Disjoint direct allows per family, sorted by port, then address. */
  direct: Record<Family, DirectElement[]>;
  /** Ids of endpoints with at least one direct element, in kernel order. */
  directIds: string[];
  /** Endpoints allowed through the host maps, in kernel order. */
  hosts: HostEndpoint[];
}

function contains(outer: AddressRange, inner: AddressRange): boolean {
  return outer.family === inner.family && outer.start <= inner.start && inner.end <= outer.end;
}

/** Address ranges an endpoint allows directly (empty for hostname endpoints). */
export function directRanges(ke: KernelEndpoint): AddressRange[] {
  const ep = ke.endpoint;
  if (usesHostMaps(ep)) return [];
  const cidrs = ep.allowed_ips.map(parseRange);
  if (ep.host === null) return cidrs;
  const literal = parseRange(ep.host);
  if (cidrs.length === 0 || cidrs.some((c) => contains(c, literal))) return [literal];
  return [];
}

export function planKernel(policies: Policy[]): KernelPlan {
  const endpoints = kernelEndpoints(policies);
  // Keyed by family * 65536 + port, so numeric order is family, then port.
  const byFamilyPort = new Map<number, OwnedRange[]>();
  const hosts: HostEndpoint[] = [];
  for (const [order, ke] of endpoints.entries()) {
    if (usesHostMaps(ke.endpoint)) {
      hosts.push({ id: ke.id, ports: [...ke.endpoint.ports] });
      continue;
    }
    for (const range of directRanges(ke)) {
      for (const port of ke.endpoint.ports) {
        const key = range.family * 65536 + port;
        const list = byFamilyPort.get(key) ?? [];
        list.push({ ...range, owner: order });
        byFamilyPort.set(key, list);
      }
    }
  }
  const direct: Record<Family, DirectElement[]> = { 4: [], 6: [] };
  const owners = new Set<number>();
  const keys = [...byFamilyPort.keys()].sort((a, b) => a - b);
  for (const key of keys) {
    const family = Math.floor(key / 65536) as Family;
    const port = key % 65536;
    for (const piece of disjointRanges(byFamilyPort.get(key)!)) {
      owners.add(piece.owner);
      const { owner, ...range } = piece;
      direct[family].push({ range, port, id: endpoints[owner]!.id });
    }
  }
  return {
    counters: endpoints.map((ke) => ({ name: counterName(ke.id), comment: counterComment(ke.policy, ke.index) })),
    direct,
    directIds: endpoints.filter((_, order) => owners.has(order)).map((ke) => ke.id),
    hosts,
  };
}
