// The one canonical form of an HTTP request path (origin-form, with its query), so that the path
// a rule decides on and the path an upstream server routes on are the same. Pure; shared by every
// way a request arrives (absolute-form HTTP/1.1, `portcullis eval`, HTTP/2 `:path`).
//
// RFC 3986 normalisation: percent-encoded unreserved characters are decoded (`%61` → `a`), the
// other escapes are upper-cased, dot segments are resolved, empty segments (`//`) collapse. The
// query is kept exactly as sent. Refused, because servers disagree on what they mean and a
// deny rule could be walked around through the disagreement:
// - an encoded `/` or `\` (`%2F`, `%5C`): some servers split on them after decoding;
// - an encoded dot segment (`%2e%2e`, `.%2E`): a client never sends one, servers resolve it;
// - a `;` in the path, raw or as `%3B`: servers such as Tomcat strip `;params` from each segment,
//   so `..;` acts as `..` and `/admin;x/` as `/admin/`. Refused in every request path, not only
//   those a rest rule looks at, because the path is made canonical before the decision knows its
//   endpoint; parameters belong in the query;
// - a raw `\`, a space or a control character (raw or encoded), a raw non-ASCII character, a
//   malformed escape, escaped bytes that are not UTF-8 (overlong forms of `/` and `.` included),
//   or a segment that Unicode compatibility folding turns into a separator, `;` or a dot segment;
// - a fragment, or a path that does not start with `/`.
// The characters RFC 3986 leaves out of a path but clients send anyway (`"<>[]^`{|}`) are
// percent-encoded.

export type CanonicalPath = { ok: true; path: string } | { ok: false; message: string };

type Segment = { ok: true; text: string } | { ok: false; message: string };

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
// Allowed as they are in a path segment (RFC 3986 pchar without `;`, which is refused).
const PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,=:@]$/;
const ALL_PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/;
// Not allowed by RFC 3986 in a path, harmless once percent-encoded.
const ENCODED_ON_THE_WAY = new Set(['"', '<', '>', '[', ']', '^', '`', '{', '|', '}']);
const HEX2 = /^[0-9A-Fa-f]{2}$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function refuse(message: string): { ok: false; message: string } {
  return { ok: false, message };
}

function escape(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** Why a raw (unescaped) character cannot stand in a path segment; null when it can. */
function rawCharProblem(c: string): string | null {
  const code = c.charCodeAt(0);
  if (code < 0x20 || code === 0x7f) return `a control character (0x${code.toString(16).padStart(2, '0')}) is not allowed in a request path`;
  if (c === ' ') return 'a space is not allowed in a request path';
  if (code > 0x7e) return 'a non-ASCII character must be percent-encoded (as UTF-8) in a request path';
  if (c === '\\') return 'a "\\" is not allowed in a request path (some servers read it as "/")';
  if (c === ';') return 'a ";" path parameter is not allowed in a request path (some servers strip it, so "..;" acts as ".."); put parameters in the query';
  return null;
}

/** Why an escaped ASCII byte cannot stay in a path segment; null when it can. */
function escapedAsciiProblem(byte: number): string | null {
  if (byte === 0x2f) return 'an encoded "/" (%2F) inside a path segment has no safe canonical form';
  if (byte === 0x5c) return 'an encoded "\\" (%5C) inside a path segment has no safe canonical form';
  if (byte === 0x3b) return 'an encoded ";" (%3B) is refused like a ";" path parameter (some servers decode before they strip parameters)';
  if (byte < 0x20 || byte === 0x7f) return `an encoded control character (${escape(byte)}) is not allowed in a request path`;
  return null;
}

/** The escaped bytes of one run of non-ASCII escapes must be UTF-8 (no overlong forms, no surrogates). */
function isUtf8(bytes: number[]): boolean {
  try {
    UTF8.decode(Uint8Array.from(bytes));
    return true;
  } catch {
    return false;
  }
}

/** True when Unicode compatibility folding (NFKC, as some servers apply) makes a separator, a `;` or a dot segment. */
function foldsIntoStructure(text: string): boolean {
  const folded = decodeURIComponent(text).normalize('NFKC');
  return /[/\\;]/.test(folded) || folded === '.' || folded === '..';
}

/** One segment that is not `.`, `..` or empty, in canonical form. */
function canonicalSegment(raw: string): Segment {
  if (ALL_PLAIN.test(raw)) return { ok: true, text: raw }; // the common case: nothing to decode or refuse
  let text = '';
  let highRun: number[] = [];
  let sawNonAscii = false;
  const endRun = (): boolean => {
    const ok = highRun.length === 0 || isUtf8(highRun);
    highRun = [];
    return ok;
  };
  const notUtf8 = refuse('percent-encoded bytes in a request path must be UTF-8 (overlong and invalid sequences are refused)');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX2.test(hex)) return refuse(`"%${hex}" is not a percent-escape (% must be followed by two hex digits)`);
      i += 2;
      const byte = Number.parseInt(hex, 16);
      if (byte >= 0x80) {
        highRun.push(byte);
        sawNonAscii = true;
        text += escape(byte);
        continue;
      }
      if (!endRun()) return notUtf8;
      const problem = escapedAsciiProblem(byte);
      if (problem !== null) return refuse(problem);
      const char = String.fromCharCode(byte);
      text += UNRESERVED.test(char) ? char : escape(byte);
      continue;
    }
    if (!endRun()) return notUtf8;
    const problem = rawCharProblem(c);
    if (problem !== null) return refuse(problem);
    if (PLAIN.test(c)) text += c;
    else if (ENCODED_ON_THE_WAY.has(c)) text += escape(c.charCodeAt(0));
    else return refuse(`"${c}" is not allowed in a request path segment`);
  }
  if (!endRun()) return notUtf8;
  if (text === '.' || text === '..') return refuse('an encoded dot segment (such as %2e%2e) has no safe canonical form');
  if (sawNonAscii && foldsIntoStructure(text)) return refuse('a path segment that Unicode folding turns into "/", "\\", ";", "." or ".." is refused');
  return { ok: true, text };
}

/** The query is passed on as sent; it only has to be something a request line can carry. */
function queryProblem(query: string): string | null {
  for (const c of query) {
    const code = c.charCodeAt(0);
    if (code <= 0x20 || code === 0x7f) return 'a space or control character is not allowed in a query';
    if (code > 0x7e) return 'a non-ASCII character must be percent-encoded in a query';
  }
  return null;
}

/**
 * The canonical form of an origin-form request target (`/path?query`), or why it has none.
 * Idempotent: a canonical path is its own canonical form.
 */
export function canonicalRequestPath(raw: string): CanonicalPath {
  if (!raw.startsWith('/')) return refuse('a request path must start with "/"');
  if (raw.includes('#')) return refuse('a fragment ("#") is not allowed in a request path');
  const mark = raw.indexOf('?');
  const pathPart = mark === -1 ? raw : raw.slice(0, mark);
  const query = mark === -1 ? null : raw.slice(mark + 1);
  if (query !== null) {
    const problem = queryProblem(query);
    if (problem !== null) return refuse(problem);
  }
  const segments = pathPart.slice(1).split('/');
  const out: string[] = [];
  for (const segment of segments) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      out.pop();
      continue;
    }
    const canonical = canonicalSegment(segment);
    if (!canonical.ok) return canonical;
    out.push(canonical.text);
  }
  const last = segments[segments.length - 1];
  const trailingSlash = out.length > 0 && (last === '' || last === '.' || last === '..');
  const path = `/${out.join('/')}${trailingSlash ? '/' : ''}`;
  return { ok: true, path: query === null ? path : `${path}?${query}` };
}
