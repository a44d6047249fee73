// Host patterns: validation and canonical form. Pure.
//
// `*` matches a run of characters inside one DNS label; `**` is allowed only as the whole
// first label and matches one or more labels. Hosts compare case-insensitively, in punycode,
// without a trailing dot.
import { domainToASCII } from 'node:url';
import { canonicalIpHost } from '../net/address.js';
import type { HostKind } from './types.js';

/** IP literals as hosts take the one canonical address form (src/net/address.ts). */
export { canonicalIpHost };

export type HostPatternResult =
  | { ok: true; host: string; kind: Exclude<HostKind, 'none'>; indexKey: string }
  | { ok: false; message: string };

const LABEL_CHARS = /^[a-z0-9*-]+$/;
const MAX_LABEL = 63;
const MAX_HOST = 253;

function labelToAscii(label: string): string | null {
  if (/^[\x00-\x7f]*$/.test(label)) return label;
  if (label.includes('*')) return null;
  const ascii = domainToASCII(label);
  return ascii === '' || ascii.includes('.') ? null : ascii;
}

/** Validates a host or host pattern from a policy file and returns its canonical form. */
export function parseHostPattern(raw: string): HostPatternResult {
  let text = raw.trim();
  if (text !== raw) return { ok: false, message: `host "${raw}" has surrounding whitespace` };
  if (text.endsWith('.') && !text.endsWith('..')) text = text.slice(0, -1);
  text = text.toLowerCase();
  if (text === '') return { ok: false, message: 'host is empty' };
  if (text === '*' || text === '**') {
    return { ok: false, message: `host "${raw}" would match every host; name the domain (e.g. "*.example.com")` };
  }
  const ip = canonicalIpHost(text);
  if (ip !== null) return { ok: true, host: ip, kind: 'exact', indexKey: ip };

  const labels = text.split('.');
  const ascii: string[] = [];
  for (const [i, label] of labels.entries()) {
    if (label === '') return { ok: false, message: `host "${raw}" has an empty label` };
    if (label.includes('**') && (label !== '**' || i !== 0)) {
      return { ok: false, message: `host "${raw}": "**" is allowed only as the whole first label (e.g. "**.example.com")` };
    }
    const converted = labelToAscii(label);
    if (converted === null) {
      return { ok: false, message: `host "${raw}": label "${label}" is not a valid internationalised label` };
    }
    if (!LABEL_CHARS.test(converted)) {
      return { ok: false, message: `host "${raw}" contains characters that are not valid in a hostname (allowed: letters, digits, "-", and "*" as a wildcard)` };
    }
    if (converted.length > MAX_LABEL) return { ok: false, message: `host "${raw}": label "${label}" is longer than 63 characters` };
    if (!converted.includes('*') && (converted.startsWith('-') || converted.endsWith('-'))) {
      return { ok: false, message: `host "${raw}": label "${label}" may not start or end with "-"` };
    }
    ascii.push(converted);
  }
  const host = ascii.join('.');
  if (host.length > MAX_HOST) return { ok: false, message: `host "${raw}" is longer than 253 characters` };

  const lastWildcard = ascii.reduce((last, label, i) => (label.includes('*') ? i : last), -1);
  if (lastWildcard === -1) return { ok: true, host, kind: 'exact', indexKey: host };
  if (lastWildcard >= ascii.length - 2) {
    return { ok: false, message: `host "${raw}": a wildcard may not stand in the last two labels (it would cover a whole top-level domain)` };
  }
  return { ok: true, host, kind: 'wildcard', indexKey: ascii.slice(lastWildcard + 1).join('.') };
}

/**
 * Canonical form of a host from a request (CONNECT target, Host header, SNI): lower-case,
 * punycode, no trailing dot, IP literals in canonical spelling. Returns null when it is not a
 * usable host name. IP literals in exotic spellings are left to the SSRF normaliser.
 */
export function canonicalRequestHost(raw: string): string | null {
  let text = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (text === '' || text.length > MAX_HOST + 2) return null;
  const ip = canonicalIpHost(text);
  if (ip !== null) return ip;
  if (text.includes('*')) return null;
  text = domainToASCII(text.toLowerCase());
  if (text === '' || text.length > MAX_HOST) return null;
  for (const label of text.split('.')) {
    if (label === '' || label.length > MAX_LABEL || !/^[a-z0-9_-]+$/.test(label)) return null;
  }
  return text;
}
