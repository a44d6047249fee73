// Flow audit events from the nft counters. Pure.
//
// The kernel counts per endpoint, not per address, so an event says how many packets and
// bytes went through one endpoint's allow (or the final reject). Where the destinations of a
// hostname endpoint are known (the host-map elements that name its counter), they are listed,
// each named by the DNS proxy's own record of what it handed out:
// `api.example.com (203.0.113.7):443`. An address the proxy never handed out stays a bare
// address; no name is ever guessed.
import type { AuditEvent } from '../audit/events.js';
import {
  DNS_COUNTER,
  PROXY_COUNTER,
  REJECT_COUNTER,
  SNI_COUNTER,
  counterName,
  usesHostMaps,
  type KernelEndpoint,
} from '../nft/names.js';

export interface CounterValue {
  name: string;
  comment: string;
  packets: number;
  bytes: number;
}

export interface HostMember {
  address: string;
  port: number;
}

/** The name(s) an address was handed out for, or undefined. */
export type AddressNamer = (address: string) => string | undefined;

const FENCE: Record<string, string> = {
  [PROXY_COUNTER]: 'the proxy',
  [DNS_COUNTER]: 'the DNS proxy',
  [SNI_COUNTER]: 'the SNI listener',
};

/** `name (address)` when the address was handed out for a name, else the bare address. */
export function nameAddress(address: string, names: AddressNamer): string {
  const name = names(address);
  return name === undefined ? address : `${name} (${address})`;
}

function destination(member: HostMember, names: AddressNamer): string {
  const shown = nameAddress(member.address, names);
  return member.address.includes(':') && shown === member.address ? `[${shown}]:${member.port}` : `${shown}:${member.port}`;
}

/**
 * One `flow` event per counter that saw packets. `hostMembers` (endpoint id → host-map elements
 * owned by it) lists a hostname endpoint's current destinations; without it the event carries none.
 */
export function flowEvents(
  counters: CounterValue[],
  endpoints: KernelEndpoint[],
  names: AddressNamer,
  hostMembers: ReadonlyMap<string, HostMember[]> = new Map(),
  time: string = new Date().toISOString(),
): AuditEvent[] {
  const byCounter = new Map(endpoints.map((ke) => [counterName(ke.id), ke]));
  const events: AuditEvent[] = [];
  for (const c of counters) {
    if (c.packets <= 0) continue;
    const base = { time, kind: 'flow' as const, counter: c.name, packets: c.packets, bytes: c.bytes };
    if (c.name === REJECT_COUNTER) {
      events.push({
        ...base,
        allow: false,
        decision: 'deny',
        policy: null,
        endpoint: null,
        host: null,
        port: null,
        reason: 'rejected in the kernel: no allow matched (packets sent past the proxy and the DNS proxy: direct connections, or ICMP errors about flows the fence does not track)',
      });
      continue;
    }
    const fence = FENCE[c.name];
    if (fence !== undefined) {
      events.push({ ...base, allow: true, decision: 'allow', policy: null, endpoint: null, host: null, port: null, reason: `allowed in the kernel: traffic to ${fence}` });
      continue;
    }
    const ke = byCounter.get(c.name);
    if (ke === undefined) continue; // a counter of another policy version: nothing honest to say
    const ep = ke.endpoint;
    const event: AuditEvent = {
      ...base,
      allow: true,
      decision: 'allow',
      policy: ke.policy,
      endpoint: `${ke.policy}/${ke.index}`,
      host: ep.host,
      port: ep.ports.length === 1 ? ep.ports[0]! : null,
      ports: [...ep.ports],
      reason: `allowed in the kernel by policy ${ke.policy} (endpoint ${ke.index}: ${ep.host ?? (ep.allowed_ips.join(', ') || 'any host')} on ${ep.ports.join(', ')})`,
    };
    if (usesHostMaps(ep)) {
      event.destinations = (hostMembers.get(ke.id) ?? []).map((m) => destination(m, names));
    } else if (ep.allowed_ips.length > 0) {
      event.destinations = [...ep.allowed_ips];
    }
    events.push(event);
  }
  return events;
}
