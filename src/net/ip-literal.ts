// IP literals in request hosts, in every spelling a resolver or a C library would accept
// (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`, `[::ffff:127.0.0.1]`), turned into their
// canonical form (address.ts) before any decision, so a policy or the SSRF check can never be
// walked around by spelling. Pure.
import ipaddr from 'ipaddr.js';
import { canonicalAddress, formatAddress, isCanonicalIPv4 } from './address.js';

export type HostLiteral =
  | { kind: 'ip'; address: string; family: 4 | 6 }
  | { kind: 'name' }
  | { kind: 'invalid'; message: string };

// A last label made of digits or a hex number makes the host an IPv4 literal (as in the WHATWG
// URL standard): it must then parse as one, or it is refused.
const NUMERIC_LABEL = /^(0x[0-9a-f]*|[0-9]+)$/i;

export function classifyHostLiteral(raw: string): HostLiteral {
  // The common case, an address already in its canonical form, needs no parser.
  if (isCanonicalIPv4(raw)) return { kind: 'ip', address: raw, family: 4 };
  if (raw.startsWith('[') || raw.includes(':')) {
    const bare = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
    if (bare.includes('%')) return { kind: 'invalid', message: 'IPv6 zone identifiers are not accepted' };
    const address = bare.includes(':') ? canonicalAddress(bare) : null;
    if (address === null) return { kind: 'invalid', message: `"${raw}" is not a valid IPv6 address` };
    return { kind: 'ip', address, family: 6 };
  }
  const text = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  const labels = text.split('.');
  const last = labels[labels.length - 1] ?? '';
  if (!NUMERIC_LABEL.test(last)) return { kind: 'name' };
  // The lenient forms (one to four parts, octal, hex) are ipaddr.js's IPv4 parser's, which
  // follows inet_aton.
  if (labels.length > 4 || !ipaddr.IPv4.isValid(text)) {
    return { kind: 'invalid', message: `"${raw}" looks like an IPv4 address but is not a valid one` };
  }
  return { kind: 'ip', address: formatAddress(ipaddr.IPv4.parse(text)), family: 4 };
}
