// Which query names the DNS proxy answers, and which kernel endpoints an answer opens. Pure.
//
// A name is covered when some endpoint of some policy names it: an exact host, or a host
// pattern as the Rego matches it (src/policy/host-match.ts, the one matcher). Policies with
// binaries count too: programs they allow may resolve the name before connecting. A hostless
// (`allowed_ips`-only) endpoint names no host, so it covers no name: queries for it are refused.
//
// Only kernel endpoints (policies without binaries, no L7 rules) that use the host maps are fed:
// their map elements are the only place an answered address opens anything.
import ipaddr from 'ipaddr.js';
import { compileHostPattern, wildcardSuffix, type HostMatcher } from '../policy/host-match.js';
import { canonicalIpHost } from '../policy/host-pattern.js';
import type { Endpoint, Policy } from '../policy/types.js';
import { compareEndpointIds, kernelEndpoints, usesHostMaps } from '../nft/names.js';

const MAX_NAME = 253;
const MAX_LABEL = 63;

/** One kernel hostname endpoint matching a name: its addresses go into the host maps for it. */
export interface HostTarget {
  /** Kernel endpoint id: the map elements for it name its counter. */
  id: string;
  policy: string;
  ports: number[];
  /** Parsed `allowed_ips`; empty means any address of the answer. */
  allowedIps: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
}

export interface NameCoverage {
  covered: boolean;
  /** Policies whose endpoints name it, sorted (for audit events). */
  policies: string[];
  /** Kernel hostname endpoints whose host-map elements an answer feeds, in policy order. */
  targets: HostTarget[];
}

interface PatternEntry {
  matches: HostMatcher;
  policy: string;
  target: HostTarget | null;
}

/**
 * Canonical form of a query name: lower-case, no trailing dot, labels of letters, digits,
 * `-` and `_` only. Returns null for anything else (it cannot match a policy host).
 */
export function canonicalQueryName(raw: string): string | null {
  const text = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase();
  if (text === '' || text.length > MAX_NAME) return null;
  for (const label of text.split('.')) {
    if (label === '' || label.length > MAX_LABEL || !/^[a-z0-9_-]+$/.test(label)) return null;
  }
  return text;
}

function parseAllowed(cidrs: string[]): HostTarget['allowedIps'] {
  return cidrs.map((text) => (text.includes('/') ? ipaddr.parseCIDR(text) : [ipaddr.parse(text), text.includes(':') ? 128 : 32]));
}

/** Whether an answered address may go into a target's sets (inside its `allowed_ips`). */
export function addressAllowed(target: HostTarget, address: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  if (target.allowedIps.length === 0) return true;
  return target.allowedIps.some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));
}

/** Index of every named endpoint: exact hosts by name, wildcards by literal suffix. */
export class CoverageIndex {
  private readonly exact = new Map<string, Array<{ policy: string; target: HostTarget | null }>>();
  private readonly wildcard = new Map<string, PatternEntry[]>();

  constructor(policies: Policy[]) {
    const targets = new Map<Endpoint, HostTarget>();
    for (const ke of kernelEndpoints(policies)) {
      if (!usesHostMaps(ke.endpoint)) continue;
      targets.set(ke.endpoint, {
        id: ke.id,
        policy: ke.policy,
        ports: [...ke.endpoint.ports],
        allowedIps: parseAllowed(ke.endpoint.allowed_ips),
      });
    }
    for (const policy of policies) {
      for (const endpoint of policy.endpoints) {
        if (endpoint.host === null) continue;
        const target = targets.get(endpoint) ?? null;
        if (endpoint.host_kind === 'wildcard') {
          const key = wildcardSuffix(endpoint.host);
          const list = this.wildcard.get(key) ?? [];
          list.push({ matches: compileHostPattern(endpoint.host), policy: policy.name, target });
          this.wildcard.set(key, list);
        } else if (canonicalIpHost(endpoint.host) === null) {
          const list = this.exact.get(endpoint.host) ?? [];
          list.push({ policy: policy.name, target });
          this.exact.set(endpoint.host, list);
        }
      }
    }
  }

  /** Coverage of a canonical name (see canonicalQueryName). */
  lookup(name: string): NameCoverage {
    const policies = new Set<string>();
    const targets = new Map<string, HostTarget>();
    const take = (policy: string, target: HostTarget | null): void => {
      policies.add(policy);
      if (target !== null) targets.set(target.id, target);
    };
    for (const hit of this.exact.get(name) ?? []) take(hit.policy, hit.target);
    // Every proper suffix of the name may be a wildcard's literal part, as in the Rego.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      for (const entry of this.wildcard.get(name.slice(dot + 1)) ?? []) {
        if (entry.matches(name)) take(entry.policy, entry.target);
      }
    }
    return {
      covered: policies.size > 0,
      policies: [...policies].sort(),
      targets: [...targets.values()].sort((a, b) => compareEndpointIds(a.id, b.id)),
    };
  }
}
