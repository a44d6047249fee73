// An upstream (corporate) proxy that allowed connections leave through. Pure: the settings and
// their parsing, the route of one connection (direct, or via the upstream proxy), the CONNECT
// request sent to it and the reading of its answer. Dialing is dialer.ts's.
//
// What the upstream proxy is told is what the policy decided: the canonical host name (the
// upstream resolves it again) or the checked IP literal, and the decided port. Credentials
// travel only in the Proxy-Authorization field written to it: no message, audit event or error
// body carries them.
//
// A name is still resolved here, and its addresses pass the SSRF check and allowed_ips, before
// the upstream proxy is asked (authorise.ts runs unchanged): the safer of the two choices, since
// skipping the lookup would leave allowed_ips unenforceable for named endpoints. The upstream
// proxy resolves the name again, so what it dials may differ from what was checked (README).
import { compileHostPattern, type HostMatcher } from '../policy/host-match.js';
import { parseHostPattern } from '../policy/host-pattern.js';
import { canonicalIpHost } from '../net/address.js';

export interface UpstreamProxy {
  /** The upstream proxy's host (name or IP literal, without brackets) and port. */
  host: string;
  port: number;
  /** The `Proxy-Authorization` value (`Basic …`); never logged. */
  authorization?: string;
  /** Canonical host patterns (the policy's syntax) dialed directly, not through the upstream proxy. */
  direct?: string[];
}

/** Where one allowed connection goes: straight to its checked addresses, or through the upstream proxy. */
export type Route = { via: 'direct' } | { via: 'upstream_proxy'; proxy: UpstreamProxy };

const DIRECT: Route = { via: 'direct' };

/** The route of every connection under one upstream-proxy setting (or none). */
export class UpstreamRoutes {
  private readonly direct: HostMatcher[];

  constructor(private readonly proxy: UpstreamProxy | undefined) {
    this.direct = (proxy?.direct ?? []).map(compileHostPattern);
  }

  /** `host` is canonical (a request host as the decision saw it). */
  routeFor(host: string): Route {
    if (!this.proxy || this.direct.some((matches) => matches(host))) return DIRECT;
    return { via: 'upstream_proxy', proxy: this.proxy };
  }
}

/** `host:port` of the upstream proxy, as messages and audit events name it. */
export function upstreamProxyName(proxy: { host: string; port: number }): string {
  return `${proxy.host.includes(':') ? `[${proxy.host}]` : proxy.host}:${proxy.port}`;
}

export type Parsed<T> = ({ ok: true } & T) | { ok: false; message: string };

/** `http://HOST:PORT` (port 80 when absent). Credentials belong in a file, never in the URL. */
export function parseUpstreamProxyUrl(text: string): Parsed<{ host: string; port: number }> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not quoted: a malformed URL may still hold a password.
    return { ok: false, message: 'not a URL (http://HOST:PORT)' };
  }
  if (url.username !== '' || url.password !== '') {
    return { ok: false, message: 'credentials in the URL are not accepted (they would show in process listings); use --upstream-proxy-auth-file' };
  }
  if (url.protocol !== 'http:') return { ok: false, message: `"${text}": only http:// proxies are supported (the tunnels through it carry TLS end to end)` };
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    return { ok: false, message: `"${text}": give only http://HOST:PORT, without a path` };
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') return { ok: false, message: `"${text}" names no host` };
  return { ok: true, host: canonicalIpHost(host) ?? host, port: url.port === '' ? 80 : Number(url.port) };
}

/** A `--no-upstream-proxy` host pattern, in the policy's syntax, canonical. */
export function parseDirectHostPattern(text: string): Parsed<{ pattern: string }> {
  const parsed = parseHostPattern(text);
  return parsed.ok ? { ok: true, pattern: parsed.host } : { ok: false, message: `--no-upstream-proxy: ${parsed.message}` };
}

/** The content of an upstream-proxy credentials file (`user:password` on one line) as a Basic authorization. */
export function parseUpstreamProxyCredentials(content: string): Parsed<{ authorization: string }> {
  const lines = content.split(/\r?\n/).filter((line) => line !== '');
  if (lines.length !== 1) return { ok: false, message: 'the upstream proxy credentials file must hold exactly one line, user:password' };
  const line = lines[0]!;
  const colon = line.indexOf(':');
  if (colon <= 0) return { ok: false, message: 'the upstream proxy credentials file must hold user:password (the user name may not be empty)' };
  // Control characters would end the header line early; the message never quotes the line.
  if (/[\x00-\x1f\x7f]/.test(line)) return { ok: false, message: 'the upstream proxy credentials contain a control character' };
  return { ok: true, authorization: `Basic ${Buffer.from(line, 'utf8').toString('base64')}` };
}

/** `host:port` as a request target: IPv6 literals in brackets. */
export function authorityOf(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The CONNECT request for the decided host (a name, or the checked IP literal) and port. */
export function connectRequest(host: string, port: number, authorization: string | undefined): Buffer {
  const authority = authorityOf(host, port);
  const credentials = authorization !== undefined ? `Proxy-Authorization: ${authorization}\r\n` : '';
  return Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${credentials}\r\n`, 'latin1');
}

export type ReplyParse =
  | { status: 'partial' }
  | { status: 'error'; message: string }
  /** `rest`: the bytes after the reply head, the tunnel's first bytes from the far side. */
  | { status: 'done'; code: number; reason: string; rest: Buffer };

/** The largest CONNECT reply head read (an upstream proxy's reply is a status line and a few fields). */
export const MAX_REPLY_HEAD = 16 * 1024;

/** Reads the upstream proxy's reply (to CONNECT, or a forwarded request's response), chunk by chunk, up to the end of its head. */
export class ConnectReplyReader {
  private received = Buffer.alloc(0);

  /** Every byte fed so far. */
  bytes(): Buffer {
    return this.received;
  }

  feed(chunk: Buffer): ReplyParse {
    this.received = Buffer.concat([this.received, chunk]);
    const end = this.received.indexOf('\r\n\r\n');
    if (end === -1) {
      return this.received.length > MAX_REPLY_HEAD ? { status: 'error', message: `no end of the reply head within ${MAX_REPLY_HEAD} bytes` } : { status: 'partial' };
    }
    if (end > MAX_REPLY_HEAD) return { status: 'error', message: `no end of the reply head within ${MAX_REPLY_HEAD} bytes` };
    const statusLine = this.received.subarray(0, this.received.indexOf('\r\n')).toString('latin1');
    const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!match) return { status: 'error', message: 'the reply is not an HTTP/1.x status line' };
    return { status: 'done', code: Number(match[1]), reason: printable(match[2] ?? ''), rest: this.received.subarray(end + 4) };
  }
}

/** A reason phrase as it may appear in a message: printable ASCII, at most 80 characters. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 80);
}

export type UpstreamProxyErrorKind = 'upstream_proxy_unreachable' | 'upstream_proxy_auth' | 'upstream_proxy_refused';

export interface UpstreamProxyRefusal {
  kind: UpstreamProxyErrorKind;
  detail: string;
  /** The upstream proxy's status code. */
  upstreamProxyStatus: number;
}

/** What the upstream proxy's answer to CONNECT means: null when the tunnel is open (any 2xx). */
export function connectReplyRefusal(proxy: UpstreamProxy, code: number, reason: string, target: string): UpstreamProxyRefusal | null {
  if (code >= 200 && code < 300) return null;
  const name = upstreamProxyName(proxy);
  const answer = `${code}${reason ? ` ${reason}` : ''}`;
  if (code === 407) {
    const why = proxy.authorization !== undefined ? 'it refused the credentials of --upstream-proxy-auth-file' : 'none are configured (--upstream-proxy-auth-file)';
    return { kind: 'upstream_proxy_auth', detail: `the upstream proxy ${name} asks for credentials (${answer}) and ${why}`, upstreamProxyStatus: code };
  }
  return { kind: 'upstream_proxy_refused', detail: `the upstream proxy ${name} refused CONNECT ${target} (${answer})`, upstreamProxyStatus: code };
}
