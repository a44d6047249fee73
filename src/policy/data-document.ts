// The data document the Rego reads: the policies by name and an index that finds candidate
// endpoints by exact host, by wildcard suffix and by port, so evaluation never walks all policies.
import { parseHostPattern } from './host-pattern.js';
import type { EndpointRef, Policy, PolicyData } from './types.js';

function push(table: Record<string, EndpointRef[]>, key: string, ref: EndpointRef): void {
  (table[key] ??= []).push(ref);
}

export function buildPolicyData(policies: Policy[]): PolicyData {
  const data: PolicyData = { policies: {}, index: { exact: {}, wildcard: {}, hostless: {} } };
  for (const policy of policies) {
    data.policies[policy.name] = policy;
    for (const [i, endpoint] of policy.endpoints.entries()) {
      const ref: EndpointRef = [policy.name, i];
      if (endpoint.host === null) {
        for (const port of endpoint.ports) push(data.index.hostless, String(port), ref);
        continue;
      }
      const parsed = parseHostPattern(endpoint.host);
      if (!parsed.ok) throw new Error(`internal: normalised host "${endpoint.host}" does not parse`);
      push(parsed.kind === 'exact' ? data.index.exact : data.index.wildcard, parsed.indexKey, ref);
    }
  }
  return data;
}
