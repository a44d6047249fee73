// Report-only mode lets a would-deny through, but the SSRF check still applies. The engine
// says `explicit_ips` only for allows, so for a would-deny this asks the policy data directly:
// does an endpoint for this host and port name every address in its allowed_ips? Pure.
import ipaddr from 'ipaddr.js';
import type { PolicyData } from '../policy/types.js';

function hostRegex(pattern: string): RegExp {
  const body = pattern
    .split('.')
    .map((label, i) => (label === '**' && i === 0 ? '(?:[^.]+\\.)*[^.]+' : label.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^.]*')))
    .join('\\.');
  return new RegExp(`^${body}$`);
}

function covers(cidrs: string[], address: string): boolean {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return false;
  }
  return cidrs.some((cidr) => {
    try {
      const range = ipaddr.parseCIDR(cidr);
      return ip.kind() === range[0].kind() && ip.match(range);
    } catch {
      return false;
    }
  });
}

export function addressesNamedByPolicy(data: PolicyData, host: string, port: number, addresses: string[]): boolean {
  for (const policy of Object.values(data.policies)) {
    for (const endpoint of policy.endpoints) {
      if (endpoint.allowed_ips.length === 0 || !endpoint.ports.includes(port)) continue;
      if (endpoint.host !== null && !hostRegex(endpoint.host).test(host)) continue;
      if (addresses.every((a) => covers(endpoint.allowed_ips, a))) return true;
    }
  }
  return false;
}
