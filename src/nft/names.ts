// Names shared by the nft renderer and the DNS proxy that fills its host maps. Pure.
//
// Only endpoints of policies without binaries (any program) and without L7 rules can be
// enforced in the kernel; each gets a stable id from its position in the sorted policy list,
// so the renderer and the DNS proxy agree on counter names without sharing state.
import { canonicalIpHost } from '../net/address.js';
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
      // Inspected endpoints too: a kernel allow would let the connection bypass inspection.
      if (endpoint.protocol === 'rest' || endpoint.tls === 'inspect') continue;
      out.push({ id: `${pi}_${ei}`, policy: policy.name, index: ei, endpoint });
    }
  }
  return out;
}

/**
 * Map of `address . port` → the named counter of the endpoint that owns the element, one per
 * family, with timeouts: the DNS proxy fills it with the answers for hostname endpoints.
 */
export function hostMapName(family: 4 | 6): string {
  return `hosts${family}`;
}

const ENDPOINT_ID = /^(\d+)_(\d+)$/;

/** True for the shape of a kernel endpoint id (`3_0`). */
export function isEndpointId(text: string): boolean {
  return ENDPOINT_ID.test(text);
}

/**
 * Orders endpoint ids as `kernelEndpoints` does (policy, then endpoint index). Where several
 * hostname endpoints allow the same `address . port`, the first in this order owns the element.
 */
export function compareEndpointIds(a: string, b: string): number {
  const [, ap, ae] = ENDPOINT_ID.exec(a) ?? [];
  const [, bp, be] = ENDPOINT_ID.exec(b) ?? [];
  return Number(ap) - Number(bp) || Number(ae) - Number(be) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Named counter of an endpoint's allows (also what its map elements point to). */
export function counterName(id: string): string {
  return `allow_${id}`;
}

/** The endpoint id of an endpoint's counter name, or null for any other counter. */
export function endpointIdOfCounter(counter: string): string | null {
  const id = counter.startsWith('allow_') ? counter.slice(6) : '';
  return isEndpointId(id) ? id : null;
}

export const REJECT_COUNTER = 'reject_all';

/** Named counters of the fence's own allows (the proxy, the DNS proxy, the SNI listener). */
export const PROXY_COUNTER = 'allow_proxy';
export const DNS_COUNTER = 'allow_dns';
export const SNI_COUNTER = 'allow_sni';

/**
 * True when the kernel allows this endpoint through the host maps filled by the DNS proxy (an
 * exact hostname or a wildcard); false when it is a direct address allow (hostless `allowed_ips`, or
 * an exact host that is an IP literal).
 */
export function usesHostMaps(endpoint: Endpoint): boolean {
  if (endpoint.host === null) return false;
  if (endpoint.host_kind === 'wildcard') return true;
  return canonicalIpHost(endpoint.host) === null;
}

/** Comment on an endpoint's counter: `policy/endpoint-index` (nft strings carry no quotes). */
export function counterComment(policy: string, index: number): string {
  const safe = policy.replace(/[^\x20-\x7e]|["\\]/g, '_').slice(0, 100);
  return `${safe}/${index}`;
}
