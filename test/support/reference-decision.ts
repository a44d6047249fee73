// An independent, deliberately naive model of the decision semantics in DESIGN.md: it walks
// every policy and turns path globs into regular expressions. The parity vectors' expectations
// come from it, so the Rego (via opa and via wasm) is checked against a second implementation.
// Hosts are matched by the one TypeScript host matcher: the vectors pin it to the Rego.
import ipaddr from 'ipaddr.js';
import { hostMatches } from '../../src/policy/host-match.js';
import type { DecisionInput, L7Rule, Policy } from '../../src/policy/types.js';

export interface ExpectedDecision {
  allow: boolean;
  decision: 'allow' | 'deny' | 'audit';
  policy: string | null;
  /** On an allow or audit: some endpoint covering the caller has tls: inspect. */
  inspect?: boolean;
  /** On an allow binding credentials: their names, and those allowed in clear text and in bodies. */
  credentials?: { bound: string[]; cleartext: string[]; body: string[] };
}

const escape = (s: string): string => s.replace(/[.+^${}()|[\]\\?]/g, '\\$&');

function pathRegex(glob: string): RegExp {
  const body = glob
    .split('**')
    .map((part) => part.split('*').map(escape).join('[^/]*'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

function inCidr(address: string, cidr: string): boolean {
  const addr = ipaddr.parse(address);
  const range = ipaddr.parseCIDR(cidr);
  return addr.kind() === range[0].kind() && addr.match(range);
}

function ruleMatches(rule: L7Rule, method: string, path: string): boolean {
  return (rule.method === '*' || rule.method === method) && pathRegex(rule.path).test(path);
}

export function referenceDecision(policies: Policy[], input: DecisionInput): ExpectedDecision {
  const host = input.network.host.toLowerCase().replace(/\.$/, '');
  const paths = [input.exec.path, ...input.exec.ancestors.map((a) => (typeof a === 'string' ? a : a.path))].filter((p) =>
    p.startsWith('/'),
  );
  const allowing: string[] = [];
  const auditing: string[] = [];
  let inspect = false;
  const bound = new Set<string>();
  const cleartext = new Set<string>();
  const body = new Set<string>();
  for (const policy of policies) {
    const binaryOk = policy.binaries.length === 0 || policy.binaries.some((b) => paths.some((p) => pathRegex(b).test(p)));
    if (!binaryOk) continue;
    for (const ep of policy.endpoints) {
      if (ep.host !== null && !hostMatches(ep.host, host)) continue;
      if (!ep.ports.includes(input.network.port)) continue;
      const addresses = input.network.addresses;
      if (ep.allowed_ips.length > 0 && addresses !== undefined) {
        if (addresses.length === 0 || !addresses.every((a) => ep.allowed_ips.some((c) => inCidr(a, c)))) continue;
      }
      if (ep.tls === 'inspect') inspect = true;
      let ok = true;
      if (ep.protocol === 'rest') {
        const req = input.request;
        // A tunnel is allowed only when it will be inspected; each request is then decided.
        if (!req) ok = ep.tls === 'inspect';
        else {
          const method = req.method.toUpperCase();
          const path = req.path.split('?')[0] ?? '';
          const denied = ep.deny_rules.some((r) => ruleMatches(r, method, path));
          ok = !denied && ep.rules.some((r) => ruleMatches(r, method, path));
        }
      }
      if (ok) {
        allowing.push(policy.name);
        for (const name of ep.credentials ?? []) {
          bound.add(name);
          if (ep.allow_cleartext_credentials) cleartext.add(name);
          if (ep.credentials_in_body) body.add(name);
        }
      }
      else if (ep.enforcement === 'audit') auditing.push(policy.name);
    }
  }
  const smallest = (names: string[]): string => [...names].sort()[0]!;
  const sorted = (names: Set<string>): string[] => [...names].sort();
  const credentials = bound.size > 0 ? { credentials: { bound: sorted(bound), cleartext: sorted(cleartext), body: sorted(body) } } : {};
  if (allowing.length > 0) return { allow: true, decision: 'allow', policy: smallest(allowing), inspect, ...credentials };
  if (auditing.length > 0) return { allow: true, decision: 'audit', policy: smallest(auditing), inspect };
  return { allow: false, decision: 'deny', policy: null };
}
