// The canonical request path: a table of vectors (the deny-rule walk-arounds of issue 14 among
// them), then fuzzing of the properties the proxy relies on: idempotence, no dot segment or
// empty segment left, and a server that percent-decodes the output sees the segments decided.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalRequestPath } from '../src/http/request-path.js';

const CANONICAL: Array<[string, string]> = [
  ['/', '/'],
  ['/v1/users', '/v1/users'],
  ['/v1/%61dmin/users', '/v1/admin/users'],
  ['/v1/%41%5a%30%2D%2e%5f%7E', '/v1/AZ0-._~'],
  ['/v1/a%3fb%3Fc', '/v1/a%3Fb%3Fc'],
  ['/v1/caf%c3%a9', '/v1/caf%C3%A9'],
  ['/v1/%F0%9F%98%80', '/v1/%F0%9F%98%80'],
  ['/v1/100%25', '/v1/100%25'],
  ['/v1/%252e%252e/admin', '/v1/%252e%252e/admin'],
  ["/v1/a:b@c!$&'()*+,=", "/v1/a:b@c!$&'()*+,="],
  ['/v1/{id}|x', '/v1/%7Bid%7D%7Cx'],
  ['/v1//x', '/v1/x'],
  ['//evil.example/x', '/evil.example/x'],
  ['/v1/./x/', '/v1/x/'],
  ['/v1/x/.', '/v1/x/'],
  ['/v1/x/..', '/v1/'],
  ['/v1/users/../admin/x', '/v1/admin/x'],
  ['/..', '/'],
  ['/../../etc', '/etc'],
  ['/v1/x?a=%2e%2e/../;b\\', '/v1/x?a=%2e%2e/../;b\\'],
  ['/v1/../x?q', '/x?q'],
  ['/?', '/?'],
];

const REFUSED: Array<[string, RegExp]> = [
  // The four walk-arounds of issue 14, and their cousins.
  ['/v1/x/%2e%2e/admin/users', /encoded dot segment/],
  ['/v1/x/..;/admin/users', /";" path parameter/],
  ['/v1/x/..%2fadmin/users', /encoded "\/" \(%2F\)/],
  ['/v1/x/.%2E/admin', /encoded dot segment/],
  ['/v1/x/%2e/admin', /encoded dot segment/],
  ['/v1/admin;x/users', /";" path parameter/],
  ['/v1/admin%3bx/users', /encoded ";" \(%3B\)/],
  ['/v1/a%2Fb', /encoded "\/"/],
  ['/v1/a%5cb', /encoded "\\"/],
  ['/v1/a\\b', /"\\" is not allowed/],
  ['/v1/%00', /encoded control character \(%00\)/],
  ['/v1/%0d%0aX', /encoded control character/],
  ['/v1/%7F', /encoded control character/],
  ['/v1/a\x00b', /control character/],
  ['/v1/a\tb', /control character/],
  ['/v1/a b', /space/],
  ['/v1/café', /non-ASCII/],
  ['/v1/%', /not a percent-escape/],
  ['/v1/%4', /not a percent-escape/],
  ['/v1/%zz', /not a percent-escape/],
  // Overlong UTF-8 forms of "." and "/", surrogates, stray bytes.
  ['/v1/%C0%AE%C0%AE/admin', /must be UTF-8/],
  ['/v1/%c0%af', /must be UTF-8/],
  ['/v1/%e0%80%af', /must be UTF-8/],
  ['/v1/%ED%A0%80', /must be UTF-8/],
  ['/v1/%FF', /must be UTF-8/],
  ['/v1/%C3', /must be UTF-8/],
  ['/v1/%C3x', /must be UTF-8/],
  // Compatibility forms that fold into "/", "\", ";" or a dot segment.
  ['/v1/x%EF%BC%8Fadmin', /Unicode folding/],
  ['/v1/%EF%BC%BC', /Unicode folding/],
  ['/v1/%EF%BC%9B', /Unicode folding/],
  ['/v1/%E2%80%A5/admin', /Unicode folding/],
  ['/v1/%EF%BC%8E%EF%BC%8E/admin', /Unicode folding/],
  // Not an origin-form path.
  ['/v1/x#frag', /fragment/],
  ['v1/x', /start with "\/"/],
  ['', /start with "\/"/],
  ['*', /start with "\/"/],
  ['/v1/x?a b', /query/],
  ['/v1/x?é', /query/],
];

describe('canonicalRequestPath', () => {
  it.each(CANONICAL)('%j → %j', (raw, path) => {
    expect(canonicalRequestPath(raw)).toEqual({ ok: true, path });
  });

  it.each(REFUSED)('refuses %j', (raw, why) => {
    const result = canonicalRequestPath(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(why);
  });

  it('refuses a bad segment even when a later ".." would remove it', () => {
    expect(canonicalRequestPath('/v1/a;b/../c').ok).toBe(false);
    expect(canonicalRequestPath('/v1/%2e%2e/../c').ok).toBe(false);
  });

  it('is linear on an overlong path', () => {
    const raw = `${'/a%62'.repeat(100_000)}${'/..'.repeat(99_999)}`;
    const started = performance.now();
    expect(canonicalRequestPath(raw)).toEqual({ ok: true, path: '/ab/' });
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

/** How an aggressive server reads a path: decode everything once, fold Unicode, split on "/" and "\", strip ";params", resolve dots. */
function serverSegments(pathPart: string): string[] {
  const out: string[] = [];
  for (const raw of decodeURIComponent(pathPart).normalize('NFKC').split(/[/\\]/)) {
    const segment = raw.split(';')[0]!;
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return out;
}

/** The segments the decision saw, each decoded on its own. */
function decidedSegments(pathPart: string): string[] {
  return pathPart
    .split('/')
    .filter((s) => s !== '')
    .map((s) => decodeURIComponent(s).normalize('NFKC'));
}

describe('canonicalRequestPath fuzzing', () => {
  const piece = fc.constantFrom(
    '/', '//', '.', '..', '%2e', '%2E', '%2f', '%5c', '\\', ';', '%3b', 'a', 'admin', 'v1', '%61', '%41', '%', '%z', '%4',
    '%c3%a9', '%C0%AE', '%e2%80%a5', '%ef%bc%8f', '%ef%bc%8e', '?', '?q=%2e/..', '#', ' ', '\x00', '\x7f', 'é', '~', '%7e',
    '{', '|', '%25', '%252e', '%00', ':', '@', '+', '%20', '%3F', '%23', '%C3', '%ed%a0%80',
  );
  const encodedUnicode = fc.string({ unit: 'grapheme', maxLength: 4 }).map((s) => encodeURIComponent(s));
  const paths = fc.oneof(
    fc.array(fc.oneof(piece, encodedUnicode), { maxLength: 24 }).map((p) => `/${p.join('')}`),
    fc.string({ unit: 'binary', maxLength: 60 }).map((s) => `/${s}`),
    fc.string({ maxLength: 60 }),
  );
  const runs = { numRuns: 20_000 };

  it('never throws, and answers a path or a reason', () => {
    fc.assert(
      fc.property(paths, (raw) => {
        const result = canonicalRequestPath(raw);
        if (result.ok) expect(result.path.startsWith('/')).toBe(true);
        else expect(result.message.length).toBeGreaterThan(0);
      }),
      runs,
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(paths, (raw) => {
        const result = canonicalRequestPath(raw);
        if (result.ok) expect(canonicalRequestPath(result.path)).toEqual(result);
      }),
      runs,
    );
  });

  it('leaves no dot segment, no empty segment, no ";" or "\\", and only upper-case escapes of reserved bytes', () => {
    fc.assert(
      fc.property(paths, (raw) => {
        const result = canonicalRequestPath(raw);
        if (!result.ok) return;
        const pathPart = result.path.split('?')[0]!;
        expect(pathPart).not.toMatch(/\/\//);
        expect(pathPart).not.toMatch(/[;\\\s\x00-\x1f\x7f-\uffff]/);
        const segments = pathPart.split('/').slice(1);
        for (const [i, segment] of segments.entries()) {
          if (i < segments.length - 1 || segment !== '') expect(['', '.', '..']).not.toContain(segment);
        }
        for (const escape of pathPart.match(/%../g) ?? []) {
          expect(escape).toMatch(/^%[0-9A-F]{2}$/);
          const byte = Number.parseInt(escape.slice(1), 16);
          if (byte < 0x80) expect(String.fromCharCode(byte)).not.toMatch(/^[A-Za-z0-9\-._~]$/);
        }
      }),
      runs,
    );
  });

  it('a server that percent-decodes the output gets the segments the decision saw', () => {
    fc.assert(
      fc.property(paths, (raw) => {
        const result = canonicalRequestPath(raw);
        if (!result.ok) return;
        const pathPart = result.path.split('?')[0]!;
        expect(serverSegments(pathPart)).toEqual(decidedSegments(pathPart));
      }),
      runs,
    );
  });
});
