// Canonical decision input: what the proxy, the CLI and the tests hand to the engine. Pure.
import { canonicalIpHost, canonicalRequestHost } from '../policy/host-pattern.js';
import type { DecisionInput } from '../policy/types.js';
import { UNRESOLVED } from '../policy/types.js';

export interface RequestFacts {
  host: string;
  port: number;
  binary?: string | null;
  ancestors?: Array<string | { pid?: number; path: string }>;
  addresses?: string[];
  method?: string;
  path?: string;
}

/** Removes dot segments and duplicate slashes so a deny rule cannot be walked around. */
export function normaliseRequestPath(raw: string): string {
  const [pathPart = '', query] = raw.split(/\?(.*)/s, 2);
  const out: string[] = [];
  for (const segment of pathPart.split('/').slice(1)) {
    if (segment === '..') out.pop();
    else if (segment !== '.' && segment !== '') out.push(segment);
  }
  const trailing = pathPart.length > 1 && pathPart.endsWith('/') && out.length > 0 ? '/' : '';
  const path = `/${out.join('/')}${trailing}`;
  return query === undefined ? path : `${path}?${query}`;
}

export function buildDecisionInput(facts: RequestFacts): DecisionInput {
  const host = canonicalRequestHost(facts.host) ?? facts.host.toLowerCase();
  const ip = canonicalIpHost(host);
  const input: DecisionInput = {
    exec: {
      path: facts.binary ? facts.binary : UNRESOLVED,
      ancestors: (facts.ancestors ?? []).map((a) => (typeof a === 'string' ? a : a.path)),
    },
    network: { host, port: facts.port },
  };
  const addresses = facts.addresses ?? (ip !== null ? [ip] : undefined);
  if (addresses !== undefined) input.network.addresses = addresses.map((a) => canonicalIpHost(a) ?? a);
  if (facts.method !== undefined || facts.path !== undefined) {
    input.request = { method: (facts.method ?? 'GET').toUpperCase(), path: normaliseRequestPath(facts.path ?? '/') };
  }
  return input;
}
