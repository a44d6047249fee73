// `allowed_ips` entries: CIDRs or single addresses, canonicalised. Pure.
import ipaddr from 'ipaddr.js';

export type CidrResult = { ok: true; cidr: string } | { ok: false; message: string };

/** Ranges that can never be declared: a policy must not open the sandbox's own host. */
const NEVER_DECLARABLE: Array<[string, string]> = [
  ['127.0.0.0/8', 'loopback'],
  ['0.0.0.0/8', 'unspecified'],
  ['169.254.0.0/16', 'link-local'],
  ['::1/128', 'loopback'],
  ['::/128', 'unspecified'],
  ['fe80::/10', 'link-local'],
];

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

function overlaps(a: Range, b: Range): boolean {
  if (a[0].kind() !== b[0].kind()) return false;
  // Two prefix blocks overlap exactly when the wider one contains the other's base address.
  const [wide, narrow] = a[1] <= b[1] ? [a, b] : [b, a];
  return (narrow[0] as ipaddr.IPv4).match(wide as [ipaddr.IPv4, number]);
}

function parseRange(text: string): Range | null {
  try {
    if (text.includes('/')) {
      // parseCIDR tries IPv6 first and throws for every IPv4 entry: slow on large policies.
      const [addr, bits] = text.includes(':') ? ipaddr.IPv6.parseCIDR(text) : ipaddr.IPv4.parseCIDR(text);
      return [addr, bits];
    }
    if (!ipaddr.isValid(text)) return null;
    const addr = ipaddr.parse(text);
    return [addr, addr.kind() === 'ipv4' ? 32 : 128];
  } catch {
    return null;
  }
}

export function parseAllowedIp(raw: string): CidrResult {
  const text = raw.trim();
  const [addrText] = text.split('/');
  // Only plain dotted-quad IPv4: "10.1" or "012.0.0.1" are ambiguous spellings in a policy.
  if (addrText !== undefined && !addrText.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(addrText)) {
    return { ok: false, message: `allowed_ips entry "${raw}" is not an IP address or CIDR (write e.g. "10.20.0.0/16")` };
  }
  const range = parseRange(text);
  if (range === null) return { ok: false, message: `allowed_ips entry "${raw}" is not an IP address or CIDR (write e.g. "10.20.0.0/16")` };
  const [addr, bits] = range;
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    return { ok: false, message: `allowed_ips entry "${raw}" is IPv4-mapped IPv6; write the IPv4 form` };
  }
  for (const [forbidden, label] of NEVER_DECLARABLE) {
    const blocked = ipaddr.parseCIDR(forbidden);
    if (overlaps(range, blocked)) {
      return { ok: false, message: `allowed_ips entry "${raw}" covers ${label} addresses (${forbidden}), which can never be allowed` };
    }
  }
  const network =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${bits}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${bits}`);
  return { ok: true, cidr: `${network.toString()}/${bits}` };
}
