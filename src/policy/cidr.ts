// `allowed_ips` entries: CIDRs or single addresses, in the canonical form of src/net. Pure.
import { formatRange, isIPv4Mapped, parseRange } from '../net/address.js';
import { neverDeclarableOverlap } from '../net/classes.js';

export type CidrResult = { ok: true; cidr: string } | { ok: false; message: string };

export function parseAllowedIp(raw: string): CidrResult {
  // Only standard spellings: "10.1" or "012.0.0.1" are ambiguous in a policy.
  const range = parseRange(raw.trim());
  if (range === null) return { ok: false, message: `allowed_ips entry "${raw}" is not an IP address or CIDR (write e.g. "10.20.0.0/16")` };
  // A range is refused when it shares even one address with the host's own ranges, however
  // spelt: the whole of it would otherwise reach them.
  const blocked = neverDeclarableOverlap(range);
  if (blocked !== null) {
    return { ok: false, message: `allowed_ips entry "${raw}" covers ${blocked.cls} addresses (${blocked.text}), which can never be allowed` };
  }
  if (isIPv4Mapped(range[0])) {
    return { ok: false, message: `allowed_ips entry "${raw}" is IPv4-mapped IPv6; write the IPv4 form` };
  }
  return { ok: true, cidr: formatRange(range) };
}
