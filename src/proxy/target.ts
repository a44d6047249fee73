// Request targets: the CONNECT authority (`host:port`, `[v6]:port`) and the absolute-form URL
// of a forward request (`http://host[:port]/path`). Pure. Hosts come out canonical: IP literals
// in one spelling, names lower-case punycode without a trailing dot; the path comes out in its
// canonical form, the one that is decided and sent upstream.
import { canonicalRequestPath } from '../http/request-path.js';
import { canonicalRequestHost } from '../policy/host-pattern.js';
import { classifyHostLiteral } from './ip-literal.js';

export interface Target {
  host: string;
  port: number;
  /** True when host is an IP literal. */
  ip: boolean;
}

export type TargetParse = ({ ok: true } & Target) | { ok: false; message: string };

export interface AbsoluteTarget extends Target {
  /** Canonical origin-form path with query, starting with "/": decided, and sent upstream as it is. */
  path: string;
  /** `host[:port]` for the Host header sent upstream. */
  authority: string;
}

function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/** Splits `host:port` / `[v6]:port` / `host` (port then null). */
function splitAuthority(authority: string): { host: string; port: string | null } | null {
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) return null;
    const rest = authority.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return null;
    return { host: authority.slice(0, close + 1), port: rest === '' ? null : rest.slice(1) };
  }
  const colon = authority.lastIndexOf(':');
  if (colon === -1) return { host: authority, port: null };
  if (authority.indexOf(':') !== colon) return null; // unbracketed IPv6
  return { host: authority.slice(0, colon), port: authority.slice(colon + 1) };
}

export function parseHost(raw: string): { ok: true; host: string; ip: boolean } | { ok: false; message: string } {
  if (raw === '') return { ok: false, message: 'empty host' };
  const literal = classifyHostLiteral(raw);
  if (literal.kind === 'invalid') return { ok: false, message: literal.message };
  if (literal.kind === 'ip') return { ok: true, host: literal.address, ip: true };
  // The IDNA conversion reads a host as a URL would and stops at these: "a/b.example" must not become "a".
  if (/[/\\?#@%:\s]/.test(raw)) return { ok: false, message: `"${raw}" is not a valid host name` };
  const host = canonicalRequestHost(raw);
  if (host === null) return { ok: false, message: `"${raw}" is not a valid host name` };
  return { ok: true, host, ip: false };
}

export function parseConnectTarget(target: string): TargetParse {
  const parts = splitAuthority(target);
  if (parts === null || parts.port === null) return { ok: false, message: 'CONNECT target must be host:port' };
  const port = parsePort(parts.port);
  if (port === null) return { ok: false, message: `invalid port "${parts.port}"` };
  const host = parseHost(parts.host);
  if (!host.ok) return host;
  return { ok: true, host: host.host, port, ip: host.ip };
}

export type AbsoluteParse = ({ ok: true } & AbsoluteTarget) | { ok: false; message: string; useConnect?: boolean };

export function parseAbsoluteTarget(target: string): AbsoluteParse {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(target);
  if (!scheme) return { ok: false, message: 'a proxy request needs an absolute URL (http://host/path) or CONNECT' };
  const name = (scheme[1] ?? '').toLowerCase();
  if (name === 'https') {
    return { ok: false, useConnect: true, message: 'https:// URLs must be tunnelled with CONNECT (the proxy does not terminate TLS)' };
  }
  if (name !== 'http') return { ok: false, message: `scheme "${name}" is not supported (http only; use CONNECT for anything else)` };
  const rest = target.slice(scheme[0].length);
  const slash = rest.search(/[/?#]/);
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const rawPath = slash === -1 ? '/' : rest.slice(slash);
  if (authority.includes('@')) return { ok: false, message: 'credentials in the URL are not accepted' };
  if (rawPath.includes('#')) return { ok: false, message: 'a fragment is not allowed in a request target' };
  const path = canonicalRequestPath(rawPath.startsWith('?') ? `/${rawPath}` : rawPath);
  if (!path.ok) return { ok: false, message: path.message };
  const parts = splitAuthority(authority);
  if (parts === null) return { ok: false, message: 'invalid URL authority' };
  const port = parts.port === null || parts.port === '' ? 80 : parsePort(parts.port);
  if (port === null) return { ok: false, message: `invalid port "${parts.port ?? ''}"` };
  const host = parseHost(parts.host);
  if (!host.ok) return host;
  const hostText = host.ip && host.host.includes(':') ? `[${host.host}]` : host.host;
  return { ok: true, host: host.host, port, ip: host.ip, path: path.path, authority: port === 80 ? hostText : `${hostText}:${port}` };
}
