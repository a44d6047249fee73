// Forward-proxy request heads for fuzzing: valid ones, and valid ones with one known defect
// injected, each with the refusal it must get (bare LF, obs-fold, bad token bytes, conflicting
// lengths, CL+TE, paths that walk around a deny rule, …).
import fc from 'fast-check';

/** What the proxy makes of a forward request head: the first stage that refuses it, or ok. */
export type HeadAnswer =
  | { stage: 'incomplete' }
  | { stage: 'head'; code: number; message: string }
  | { stage: 'target'; message: string }
  | { stage: 'framing'; code: number; message: string }
  | { stage: 'ok' };

/** The answer a defect must get; a target refusal is named by a pattern of its message. */
export type ExpectedAnswer = Exclude<HeadAnswer, { stage: 'target' }> | { stage: 'target'; pattern: RegExp };

export interface Defect {
  name: string;
  text: string;
  expected: ExpectedAnswer;
}

export interface HeadParts {
  method: string;
  host: string;
  path: string;
  version: string;
  headers: Array<[string, string]>;
}

/** The limit the defect "head too large" is built against. */
export const DEFECT_MAX_HEAD = 4096;
export const DEFECT_CLASSES = 18;

export function headText(h: HeadParts, lineEnds?: string[]): string {
  const lines = [`${h.method} http://${h.host}${h.path} ${h.version}`, ...h.headers.map(([n, v]) => `${n}: ${v}`)];
  return `${lines.map((l, i) => l + (lineEnds?.[i] ?? '\r\n')).join('')}\r\n`;
}

const FRAMING_NAMES = /^(content-length|transfer-encoding|connection)$/i;

export function validHeadParts(host = 'a.example', methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'X-CUSTOM']): fc.Arbitrary<HeadParts> {
  return fc.record({
    method: fc.constantFrom(...methods),
    host: fc.constant(host),
    path: fc.stringMatching(/^(\/[a-z0-9]{1,8}){1,4}(\?[a-z0-9=&]{0,12})?$/),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0'),
    headers: fc
      .array(fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/)), { maxLength: 8 })
      .map((hs) => [['Host', host] as [string, string], ...hs.filter(([n]) => !FRAMING_NAMES.test(n))]),
  });
}

/** Inserts `piece` into `text` at a position chosen by `at` within [from, text.length]. */
function insertAt(text: string, piece: string, at: number, from = 0): string {
  const i = from + (at % (text.length - from + 1));
  return text.slice(0, i) + piece + text.slice(i);
}

const NON_TOKEN = ['(', ')', ',', '/', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}', '"', '\t', '\x01', '\x1f', '\x7f', '\xe9'];
const VALUE_CONTROLS = ['\x00', '\x01', '\x08', '\x0b', '\x0c', '\x0e', '\x1b', '\x1f', '\x7f'];
const TARGET_BAD = ['\x00', '\x01', '\t', '\x1f', '\x7f', '\x80', '\xe9', '\xff'];
const PATH_REFUSED: Array<[string, RegExp]> = [
  ['/%2e%2e', /encoded dot segment/],
  ['/.%2E', /encoded dot segment/],
  ['/..;', /";" path parameter/],
  ['/a;b', /";" path parameter/],
  ['/%2f', /encoded "\/"/],
  ['/%5C', /encoded "\\"/],
  ['/\\', /"\\" is not allowed/],
  ['/%00', /encoded control character/],
  ['/%c0%ae', /UTF-8/],
  ['/%zz', /not a percent-escape/],
  ['#frag', /fragment/],
];

const head400 = (message: string): ExpectedAnswer => ({ stage: 'head', code: 400, message });

/** The defects of one valid head; a, b, c pick where and what. */
function defectsOf(h: HeadParts, a: number, b: number, c: number): Defect[] {
  const lines = 1 + h.headers.length;
  const header = b % h.headers.length;
  const [name, value] = h.headers[header]!;
  const withHeader = (n: string, v: string): HeadParts => ({ ...h, headers: h.headers.map((hv, i) => (i === header ? [n, v] : hv)) });
  const withExtra = (...extra: Array<[string, string]>): HeadParts => ({ ...h, headers: [...h.headers, ...extra] });
  const folded = [...h.headers.slice(0, header + 1), [c % 2 ? ' x' : '\tx', 'y'] as [string, string], ...h.headers.slice(header + 1)];
  const version = `HTTP/${2 + (c % 8)}.${a % 10}`;
  const [pathPiece, pathWhy] = PATH_REFUSED[c % PATH_REFUSED.length]!;
  return [
    { name: 'bare LF', text: headText(h, Array.from({ length: lines }, (_, i) => (i === a % lines ? '\n' : '\r\n'))), expected: head400('line endings must be CRLF') },
    { name: 'bare CR', text: headText(withHeader(name, insertAt(value, `\r${String.fromCharCode(0x21 + (c % 90))}`, a))), expected: head400('line endings must be CRLF') },
    // headText writes "name: value"; the folded line is " x y", a continuation of the line before.
    { name: 'obs-fold', text: headText({ ...h, headers: folded }).replace(/\r\n(\s)x: y\r\n/, '\r\n$1x y\r\n'), expected: head400('folded header lines are not accepted') },
    { name: 'bad header name', text: headText(withHeader(insertAt(name, NON_TOKEN[c % NON_TOKEN.length]!, a, 1), value)), expected: head400('invalid header name') },
    { name: 'space before colon', text: headText(withHeader(`${name} `, value)), expected: head400('invalid header name') },
    { name: 'control in value', text: headText(withHeader(name, insertAt(value, VALUE_CONTROLS[c % VALUE_CONTROLS.length]!, a))), expected: head400(`invalid characters in header ${name}`) },
    { name: 'bad method', text: headText({ ...h, method: insertAt(h.method, NON_TOKEN[c % NON_TOKEN.length]!, a) }), expected: head400('invalid method') },
    { name: 'bad target byte', text: headText({ ...h, path: insertAt(h.path, TARGET_BAD[c % TARGET_BAD.length]!, a, 1) }), expected: head400('invalid request target') },
    { name: 'unsupported version', text: headText({ ...h, version }), expected: { stage: 'head', code: 501, message: `${version} is not supported` } },
    { name: 'malformed version', text: headText({ ...h, version: ['HTTP/1', 'http/1.1', 'HTTP/1.1x', 'HTTP/11', 'HTTPS/1.1'][c % 5]! }), expected: head400('invalid protocol version') },
    {
      name: 'head too large',
      text: headText(withHeader(name, 'v'.repeat(DEFECT_MAX_HEAD + (a % 100)))),
      expected: { stage: 'head', code: 431, message: `request head larger than ${DEFECT_MAX_HEAD} bytes` },
    },
    {
      name: 'too many fields',
      text: headText({ ...h, headers: [['Host', h.host], ...Array.from({ length: 100 + (a % 20) }, (_, i): [string, string] => [`X-${i}`, 'v'])] }),
      expected: { stage: 'head', code: 431, message: 'more than 100 header fields' },
    },
    {
      name: 'duplicate Content-Length, different values',
      text: headText(withExtra(['Content-Length', String(a % 1000)], ['Content-Length', String((a % 1000) + 1 + (c % 9))])),
      expected: { stage: 'framing', code: 400, message: 'conflicting Content-Length values' },
    },
    {
      name: 'Content-Length list, different values',
      text: headText(withExtra(['Content-Length', `${a % 1000}, ${(a % 1000) + 1}`])),
      expected: { stage: 'framing', code: 400, message: 'conflicting Content-Length values' },
    },
    {
      name: 'Content-Length with Transfer-Encoding',
      text: headText(withExtra(['Transfer-Encoding', 'chunked'], ['Content-Length', String(a % 1000)])),
      expected: { stage: 'framing', code: 400, message: 'both Transfer-Encoding and Content-Length given' },
    },
    {
      name: 'invalid Content-Length',
      text: headText(withExtra(['Content-Length', ['-1', '+5', '1e3', '0x10', '5 5', '1234567890123456', 'five'][c % 7]!])),
      expected: { stage: 'framing', code: 400, message: 'invalid Content-Length' },
    },
    {
      name: 'other transfer coding',
      text: headText(withExtra(['Transfer-Encoding', ['gzip, chunked', 'chunked, chunked', 'identity', 'chunked;q=1'][c % 4]!])),
      expected: { stage: 'framing', code: 501, message: 'only "Transfer-Encoding: chunked" is supported' },
    },
    { name: 'path that has no canonical form', text: headText({ ...h, path: h.path.replace(/(\?|$)/, `${pathPiece}$1`) }), expected: { stage: 'target', pattern: pathWhy } },
  ];
}

/** One valid head with one known defect, and the answer it must get. */
export function headDefects(host = 'a.example', methods?: string[]): fc.Arbitrary<Defect> {
  return fc
    .tuple(validHeadParts(host, methods), fc.nat(), fc.nat(), fc.nat(), fc.nat())
    .map(([h, a, b, c, which]) => {
      const all = defectsOf(h, a, b, c);
      return all[which % all.length]!;
    });
}
