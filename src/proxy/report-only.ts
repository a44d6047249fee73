// Report-only mode lets a would-deny through, recorded as `audit`; the SSRF check still applies.
// Everything it needs is in the decision: for a deny, `explicit_ips` says whether an endpoint
// matching host and port names every resolved address in its allowed_ips (the Rego's
// `addresses_named`), so no host is matched here. Pure.
import type { Decision } from '../policy/types.js';

/** A would-deny let through in report-only mode, recorded as `audit`. */
export function letThrough(decision: Decision): Decision {
  return { ...decision, allow: true, decision: 'audit', reason: `report-only, would deny: ${decision.reason}` };
}

/**
 * Whether the SSRF check may pass the resolved addresses because the policy names them: for an
 * allow, an endpoint it rests on lists them in its allowed_ips; for a deny (let through in
 * report-only mode), some endpoint for this host and port does.
 */
export function addressesNamed(decision: Decision): boolean {
  return decision.explicit_ips === true;
}
