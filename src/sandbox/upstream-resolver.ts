// The DNS server the sandbox's lookups are forwarded to when `--resolver` is not given: the
// first `nameserver` of the machine's resolv.conf.
import { readFileSync } from 'node:fs';
import type { HostPort } from './sandbox.js';

/** First nameserver in resolv.conf text, port 53. Pure. */
export function firstNameserver(text: string): HostPort | null {
  for (const line of text.split('\n')) {
    const match = /^\s*nameserver\s+([0-9a-fA-F.:]+)(%\S+)?\s*$/.exec(line);
    if (match) return { host: match[1]!, port: 53 };
  }
  return null;
}

export function systemResolver(file = '/etc/resolv.conf'): HostPort | null {
  try {
    return firstNameserver(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** `ADDR:PORT`, `[v6]:PORT` or a bare address (port 53). Pure; throws on anything else. */
export function parseHostPort(text: string, defaultPort = 53): HostPort {
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: checkPort(bracketed[2], defaultPort, text) };
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?$/.exec(text);
  if (v4) return { host: v4[1]!, port: checkPort(v4[2], defaultPort, text) };
  if (/^[0-9a-fA-F:]+$/.test(text) && text.includes(':')) return { host: text, port: defaultPort };
  throw new Error(`"${text}" is not ADDR:PORT`);
}

function checkPort(raw: string | undefined, fallback: number, text: string): number {
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`"${text}": port must be 1-65535`);
  return port;
}
