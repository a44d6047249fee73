// Names shared by the nft renderer and the DNS proxy that fills its sets. Pure.
//
// Only endpoints of policies without binaries (any program) and without L7 rules can be
// enforced in the kernel; each gets a stable id from its position in the sorted policy list,
// so the renderer and the DNS proxy agree on set names without sharing state.
import type { Endpoint, Policy } from '../policy/types.js';

export const NFT_TABLE = 'portcullis';
export const NFT_FAMILY = 'inet';

export interface KernelEndpoint {
  /** Stable id, e.g. "3_0" = policy #3 (sorted by name), endpoint #0. */
  id: string;
  policy: string;
  index: number;
  endpoint: Endpoint;
}

/** Endpoints the kernel may allow directly, in a deterministic order. */
export function kernelEndpoints(policies: Policy[]): KernelEndpoint[] {
  const sorted = [...policies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: KernelEndpoint[] = [];
  for (const [pi, policy] of sorted.entries()) {
    if (policy.binaries.length > 0) continue;
    for (const [ei, endpoint] of policy.endpoints.entries()) {
      if (endpoint.protocol === 'rest') continue;
      out.push({ id: `${pi}_${ei}`, policy: policy.name, index: ei, endpoint });
    }
  }
  return out;
}

/** Set of `address . port` elements the DNS proxy fills for a hostname endpoint. */
export function hostSetName(id: string, family: 4 | 6): string {
  return `host${family}_${id}`;
}

/** Interval set of `allowed_ips . port` for a hostless (CIDR) endpoint. */
export function cidrSetName(id: string, family: 4 | 6): string {
  return `cidr${family}_${id}`;
}

/** Named counter of an endpoint's allow rule. */
export function counterName(id: string): string {
  return `allow_${id}`;
}

export const REJECT_COUNTER = 'reject_all';
