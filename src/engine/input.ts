// Canonical decision input: what the proxy, the CLI and the tests hand to the engine. Pure.
// A request path is decided in its canonical form (src/http/request-path.ts); one that has none
// is an error, never decided in some other spelling.
import { canonicalRequestPath } from '../http/request-path.js';
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

/** A request path with no safe canonical form: the proxy answers such a request with 400. */
export class RequestPathError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`request path ${JSON.stringify(path)} refused: ${problem}`);
    this.name = 'RequestPathError';
  }
}

/** The path rules decide on: the canonical form, never the raw one (throws RequestPathError). */
function decisionPath(raw: string): string {
  const canonical = canonicalRequestPath(raw);
  if (!canonical.ok) throw new RequestPathError(raw, canonical.message);
  return canonical.path;
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
    input.request = { method: (facts.method ?? 'GET').toUpperCase(), path: decisionPath(facts.path ?? '/') };
  }
  return input;
}
