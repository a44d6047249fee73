// The decision flow for one request: policy first without addresses (a refused host is never
// looked up, so nothing leaks through DNS), then one lookup, then the policy again with the
// addresses (allowed_ips), then the SSRF check on every address. The addresses returned are
// the only ones the caller may dial.
import { buildDecisionInput } from '../engine/input.js';
import type { PolicyEngine } from '../engine/engine.js';
import type { ProcessIdentity } from '../identity/types.js';
import type { Decision } from '../policy/types.js';
import type { ProxyErrorKind } from './responses.js';
import { addressesNamed, letThrough } from './report-only.js';
import { checkAddresses } from './ssrf.js';
import { DnsLookupError, type UpstreamLookup } from './upstream-dns.js';

export interface RequestFacts {
  host: string;
  port: number;
  /** The host is an IP literal (already canonical). */
  ip: boolean;
  method?: string;
  path?: string;
}

export interface AuthoriseContext {
  engine: PolicyEngine;
  lookup: UpstreamLookup;
  ownAddresses: ReadonlySet<string>;
  reportOnly: boolean;
  /** The proxy has a CA: a tunnel the policy wants inspected is inspected, not refused. */
  canInspect: boolean;
}

export type Authorisation =
  | { ok: true; decision: Decision; addresses: string[] }
  | { ok: false; kind: ProxyErrorKind; detail: string; decision: Decision; addresses?: string[] };

export function decisionInputFor(identity: ProcessIdentity, facts: RequestFacts, addresses?: string[]) {
  return buildDecisionInput({
    host: facts.host,
    port: facts.port,
    binary: identity.path,
    ancestors: identity.ancestors.map((a) => a.path),
    ...(addresses !== undefined ? { addresses } : {}),
    ...(facts.method !== undefined ? { method: facts.method } : {}),
    ...(facts.path !== undefined ? { path: facts.path } : {}),
  });
}

function denied(reason: string): Decision {
  return { allow: false, decision: 'deny', reason, policy: null };
}

/**
 * A tunnel the policy allows only inspected (decision.inspect) is refused while the proxy has no
 * CA to inspect with; null when the decision stands. Requests (method and path) are not tunnels.
 */
export function inspectionRefusal(decision: Decision, facts: RequestFacts): Decision | null {
  if (!decision.allow || decision.inspect !== true || facts.method !== undefined) return null;
  const reason = `${facts.host}:${facts.port} is allowed (policy ${decision.policy ?? '?'}) but must be TLS-inspected: an endpoint covering it has tls: inspect (the default for protocol: rest), and TLS inspection needs the proxy to have a CA (--ca-cert FILE --ca-key FILE; portcullis ca init makes one); tls: passthrough on an endpoint without method/path rules lets a tunnel through uninspected`;
  return { allow: false, decision: 'deny', reason, policy: decision.policy };
}

/**
 * After a reload: an opaque tunnel the policy now wants inspected is cut (its TLS session is the
 * client's and the server's; the proxy cannot step into it), null when the decision stands.
 */
export function opaqueTunnelRefusal(decision: Decision, facts: RequestFacts, canInspect: boolean): Decision | null {
  if (!canInspect) return inspectionRefusal(decision, facts);
  if (!decision.allow || decision.inspect !== true || facts.method !== undefined) return null;
  const reason = `${facts.host}:${facts.port} must now be TLS-inspected (policy ${decision.policy ?? '?'}), and this tunnel was opened uninspected; a new connection will be inspected`;
  return { allow: false, decision: 'deny', reason, policy: decision.policy };
}

export async function authorise(ctx: AuthoriseContext, identity: ProcessIdentity, facts: RequestFacts): Promise<Authorisation> {
  let reported: Decision | null = null;
  const refuse = (kind: ProxyErrorKind, decision: Decision): Authorisation | null => {
    if (!ctx.reportOnly) return { ok: false, kind, detail: decision.reason, decision };
    reported ??= letThrough(decision);
    return null;
  };

  if (identity.integrity_violation) {
    const refusal = refuse('integrity_violation', denied(`integrity violation: ${identity.integrity_violation}`));
    if (refusal) return refusal;
  }
  const first = ctx.engine.decide(decisionInputFor(identity, facts));
  if (!first.allow) {
    const refusal = refuse('policy_denied', first);
    if (refusal) return refusal;
  }
  const uninspectable = ctx.canInspect ? null : inspectionRefusal(first, facts);
  if (uninspectable) {
    const refusal = refuse('inspection_unavailable', uninspectable);
    if (refusal) return refusal;
  }

  let addresses: string[];
  if (facts.ip) addresses = [facts.host];
  else {
    try {
      addresses = await ctx.lookup.lookup(facts.host);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const timeout = err instanceof DnsLookupError && err.timeout;
      return { ok: false, kind: timeout ? 'upstream_timeout' : 'dns_failed', detail: message, decision: reported ?? first };
    }
  }

  const second = ctx.engine.decide(decisionInputFor(identity, facts, addresses));
  if (!second.allow) {
    const refusal = refuse('policy_denied', second);
    if (refusal) return { ...refusal, addresses };
  }

  // SSRF stays enforced in report-only mode: it protects the host, it is not policy.
  const ssrf = checkAddresses(addresses, ctx.ownAddresses, addressesNamed(second));
  if (!ssrf.ok) {
    const detail =
      ssrf.cls === 'proxy-own-address'
        ? `${facts.host} resolves to ${ssrf.address}, an address of the proxy itself`
        : `${facts.host} resolves to ${ssrf.address}, a ${ssrf.cls} address, and no endpoint's allowed_ips covers it`;
    return { ok: false, kind: 'ssrf_denied', detail, decision: denied(`ssrf: ${detail}`), addresses };
  }
  return { ok: true, decision: reported ?? second, addresses };
}
