// The hello's egress lists for srt-proxy: every host some endpoint can allow, in the only
// syntax srt-proxy understands (a lower-case name, `*.` + a name of two labels or more, or an IP
// literal, each with `:port`). srt-proxy refuses a host outside the list without asking, so the
// list must cover the policy; a pattern it cannot express is widened to the nearest one it can
// (`api-*.example.net` → `*.example.net`), since every request is still decided by the policy.
// Pure.
import ipaddr from 'ipaddr.js';
import type { Endpoint, PolicyData } from '../policy/types.js';

/** A hostless range is listed address by address up to this many addresses. */
export const MAX_LISTED_RANGE = 256;

export interface EgressLists {
  allowedDomains: string[];
  deniedDomains: string[];
  /** Patterns listed wider than the policy wrote them: `pattern → entry`. */
  widened: Array<{ pattern: string; entry: string }>;
  /** What srt-proxy's syntax cannot cover at all (too wide a hostless range). */
  uncovered: string[];
}

function withPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `*.suffix` where suffix is what follows the last label holding a wildcard. */
function wildcardEntry(pattern: string): string {
  const labels = pattern.split('.');
  let last = -1;
  labels.forEach((label, i) => {
    if (label.includes('*')) last = i;
  });
  return `*.${labels.slice(last + 1).join('.')}`;
}

function rangeAddresses(cidr: string): string[] | null {
  const [base, bits] = ipaddr.parseCIDR(cidr);
  const hostBits = (base.kind() === 'ipv4' ? 32 : 128) - bits;
  if (2 ** hostBits > MAX_LISTED_RANGE) return null;
  const first = base.toByteArray();
  const out: string[] = [];
  for (let n = 0; n < 2 ** hostBits; n++) {
    const bytes = [...first];
    let carry = n;
    for (let i = bytes.length - 1; i >= 0 && carry > 0; i--) {
      const sum = bytes[i]! + (carry & 0xff);
      bytes[i] = sum & 0xff;
      carry = (carry >>> 8) + (sum >> 8);
    }
    out.push(ipaddr.fromByteArray(bytes).toString());
  }
  return out;
}

function endpointEntries(endpoint: Endpoint, lists: EgressLists): string[] {
  if (endpoint.host === null) {
    const hosts: string[] = [];
    for (const cidr of endpoint.allowed_ips) {
      const addresses = rangeAddresses(cidr);
      if (addresses === null) lists.uncovered.push(`${cidr} (ports ${endpoint.ports.join(', ')})`);
      else hosts.push(...addresses);
    }
    return hosts;
  }
  if (endpoint.host_kind !== 'wildcard') return [endpoint.host];
  const entry = wildcardEntry(endpoint.host);
  if (entry !== endpoint.host) lists.widened.push({ pattern: endpoint.host, entry });
  return [entry];
}

export function egressLists(data: PolicyData): EgressLists {
  const lists: EgressLists = { allowedDomains: [], deniedDomains: [], widened: [], uncovered: [] };
  const seen = new Set<string>();
  for (const name of Object.keys(data.policies).sort()) {
    for (const endpoint of data.policies[name]!.endpoints) {
      for (const host of endpointEntries(endpoint, lists)) {
        for (const port of endpoint.ports) {
          const entry = withPort(host, port);
          if (seen.has(entry)) continue;
          seen.add(entry);
          lists.allowedDomains.push(entry);
        }
      }
    }
  }
  return lists;
}
