// The proxy's pure parsers: request heads, targets, IP literals, ClientHellos, chunked bodies and
// the SSRF classes — examples, then fuzzing (known defects get their own refusal; 100,000
// malformed inputs for each parser get only known refusals).
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBodyScanner, MAX_CHUNK_SIZE, MAX_EXTENSION_BYTES, MAX_TRAILER_BYTES, MAX_TRAILER_FIELDS, type ChunkedErrorCode, type ChunkedFeed } from '../src/proxy/chunked.js';
import { parseClientHello } from '../src/proxy/client-hello.js';
import { parseRequestHead, requestBodyFraming } from '../src/proxy/http-head.js';
import { classifyHostLiteral } from '../src/proxy/ip-literal.js';
import { checkAddresses, forbiddenAddressClass } from '../src/proxy/ssrf.js';
import { parseAbsoluteTarget, parseConnectTarget, parseHost } from '../src/proxy/target.js';
import { canonicalRequestPath } from '../src/http/request-path.js';
import { DEFECT_CLASSES, DEFECT_MAX_HEAD, headDefects, headText, validHeadParts, type HeadAnswer } from './support/head-defects.js';

/** The first bytes a real Node TLS client sends: its ClientHello. */
async function captureHello(servername?: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        const parsed = parseClientHello(buf);
        if (parsed.status !== 'incomplete' || buf.length > 4096) {
          s.destroy();
          resolve(buf);
        }
      });
    }),
  );
  const client = tls.connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}) });
  client.on('error', () => undefined);
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

let hello: Buffer;
let helloNoSni: Buffer;
beforeAll(async () => {
  hello = await captureHello('api.example.com');
  helloNoSni = await captureHello();
});

describe('request head', () => {
  it('parses CONNECT and absolute-form heads and says where the body starts', () => {
    const text = 'CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nUser-Agent: x\r\n\r\nTLS';
    const r = parseRequestHead(Buffer.from(text), 16384);
    expect(r.status).toBe('ok');
    if (r.status !== 'ok') return;
    expect(r.head).toMatchObject({ method: 'CONNECT', target: 'api.example.com:443', version: '1.1' });
    expect(r.head.headers).toEqual([{ name: 'Host', value: 'api.example.com:443' }, { name: 'User-Agent', value: 'x' }]);
    expect(text.slice(r.length)).toBe('TLS');
  });

  it('waits for more bytes, then refuses oversize, bare LF, folding, bad names and versions', () => {
    expect(parseRequestHead(Buffer.from('GET http://a/ HTTP/1.1\r\nHost: a\r\n'), 16384).status).toBe('incomplete');
    expect(parseRequestHead(Buffer.from(`GET http://a/ HTTP/1.1\r\nX: ${'a'.repeat(200)}`), 100)).toMatchObject({ code: 431 });
    const bad = [
      'GET http://a/ HTTP/1.1\nHost: a\n\n',
      'GET http://a/ HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\n: a\r\n\r\n',
      'GET  http://a/ HTTP/1.1\r\n\r\n',
      'GET http://a/ HTTP/1.1 \r\n\r\n',
      'G(T http://a/ HTTP/1.1\r\n\r\n',
      'GET http://a/ HTTP/x\r\n\r\n',
      'GET http://a/\x01 HTTP/1.1\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nX: a\x00b\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n',
    ];
    for (const text of bad) expect(parseRequestHead(Buffer.from(text, 'latin1'), 16384), JSON.stringify(text)).toMatchObject({ status: 'error', code: 400 });
    expect(parseRequestHead(Buffer.from('GET http://a/ HTTP/2.0\r\n\r\n'), 16384)).toMatchObject({ code: 501 });
  });

  it('body framing refuses Content-Length with Transfer-Encoding and conflicting lengths', () => {
    const head = (h: string) => {
      const r = parseRequestHead(Buffer.from(`POST http://a/ HTTP/1.1\r\n${h}\r\n\r\n`), 16384);
      if (r.status !== 'ok') throw new Error('parse');
      return requestBodyFraming(r.head);
    };
    expect(head('Content-Length: 5')).toEqual({ kind: 'length', length: 5 });
    expect(head('Content-Length: 5\r\nContent-Length: 5')).toEqual({ kind: 'length', length: 5 });
    expect(head('Content-Length: 5\r\nContent-Length: 6')).toMatchObject({ kind: 'error', code: 400 });
    expect(head('Content-Length: -1')).toMatchObject({ kind: 'error' });
    expect(head('Content-Length: 5\r\nTransfer-Encoding: chunked')).toMatchObject({ kind: 'error', code: 400 });
    expect(head('Transfer-Encoding: chunked')).toEqual({ kind: 'chunked' });
    expect(head('Transfer-Encoding: gzip, chunked')).toMatchObject({ kind: 'error', code: 501 });
    expect(head('X: y')).toEqual({ kind: 'none' });
  });
});

/** Feeds a chunked body in one piece. */
function feedAll(text: string): ChunkedFeed {
  return new ChunkedBodyScanner().feed(Buffer.from(text, 'latin1'));
}

/** Feeds a chunked body a byte at a time; the first error, or the total consumed. */
function feedBytewise(text: string): ChunkedFeed {
  const scanner = new ChunkedBodyScanner();
  const bytes = Buffer.from(text, 'latin1');
  let consumed = 0;
  for (let i = 0; i < bytes.length; i++) {
    const fed = scanner.feed(bytes.subarray(i, i + 1));
    if ('error' in fed) return fed;
    consumed += fed.consumed;
    if (fed.done) return { consumed, done: true };
  }
  return { consumed, done: false };
}

describe('chunked request bodies', () => {
  const encode = (parts: Buffer[], trailer = '') =>
    Buffer.concat([...parts.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]), Buffer.from(`0\r\n${trailer}\r\n`)]);

  it('finds the exact end of any chunked body, however the bytes are split', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 8 }),
        fc.constantFrom('', 'X-Sum: 1\r\n'),
        fc.array(fc.nat(), { maxLength: 6 }),
        (parts, trailer, cuts) => {
          const body = encode(parts.map((p) => Buffer.from(p)), trailer);
          const wire = Buffer.concat([body, Buffer.from('GET http://smuggled/ HTTP/1.1\r\n\r\n')]);
          const points = [...new Set(cuts.map((c) => c % wire.length))].sort((a, b) => a - b);
          const scanner = new ChunkedBodyScanner();
          let consumed = 0;
          let done = false;
          let from = 0;
          for (const to of [...points, wire.length]) {
            if (done || to <= from) continue;
            const fed = scanner.feed(wire.subarray(from, to));
            if ('error' in fed) throw new Error(fed.error);
            consumed += fed.consumed;
            done = fed.done;
            from = to;
          }
          expect(done).toBe(true);
          expect(consumed).toBe(body.length);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('refuses bad sizes and missing CRLFs', () => {
    const cases: Array<[string, ChunkedErrorCode]> = [
      ['x\r\n', 'chunk-size'],
      ['5\nhello\r\n', 'chunk-size'],
      ['5\r\nhelloXX', 'line-ending'],
      ['1234567890abcdef0\r\n', 'chunk-size-too-large'],
      ['\r\n', 'chunk-size'],
      ['0\r\nX: y\n', 'line-ending'],
      ['5;a\x01\r\n', 'chunk-extension'],
    ];
    for (const [bad, code] of cases) expect(feedAll(bad), JSON.stringify(bad)).toMatchObject({ code });
  });

  it('caps chunk sizes far below 2^53: at most 16 hex digits and 2^40 bytes', () => {
    // 15 digits used to be accepted, a size past 2^53 that a Number cannot count exactly.
    expect(feedAll('fffffffffffffff\r\n')).toMatchObject({ code: 'chunk-size-too-large' });
    expect(feedAll('20000000000001\r\n')).toMatchObject({ code: 'chunk-size-too-large' });
    expect(feedAll('10000000001\r\n')).toMatchObject({ code: 'chunk-size-too-large', error: `chunk larger than ${MAX_CHUNK_SIZE} bytes` });
    expect(feedAll('00000000000000001\r\n')).toMatchObject({ code: 'chunk-size-too-large', error: 'chunk size longer than 16 hex digits' });
    expect(feedAll('10000000000\r\nabc')).toEqual({ consumed: 16, done: false });
    expect(feedAll('0000000000000005\r\nhello\r\n0\r\n\r\n')).toEqual({ consumed: 30, done: true });
    expect(feedAll(`5;${'x'.repeat(MAX_EXTENSION_BYTES + 1)}\r\n`)).toMatchObject({ code: 'chunk-extension' });
  });

  it('checks every trailer line as a header field, however the bytes are split', () => {
    const good = ['X-Sum: 1', 'X-A:b', 'X-B: v w\t', 'X-Latin: caf\xe9'];
    const bad: Array<[string, RegExp]> = [
      ['X Y: 1', /invalid trailer field name/],
      ['X : 1', /invalid trailer field name/],
      ['(x): 1', /invalid trailer field name/],
      [': 1', /without a name/],
      ['NoColon', /without a name/],
      [' folded: 1', /folded/],
      ['\tfolded', /folded/],
      ['X: a\x00b', /invalid characters in trailer field X/],
      ['X: a\x7fb', /invalid characters in trailer field X/],
      ['Content-Length: 5', /Content-Length is not allowed in a trailer/],
      ['transfer-encoding: chunked', /not allowed in a trailer/],
      ['Host: other.example', /not allowed in a trailer/],
    ];
    const body = (trailer: string) => `3\r\nabc\r\n0\r\n${trailer}\r\n\r\n`;
    for (const line of good) {
      const text = body(line);
      expect(feedAll(text), JSON.stringify(line)).toEqual({ consumed: text.length, done: true });
      expect(feedBytewise(text), JSON.stringify(line)).toEqual({ consumed: text.length, done: true });
    }
    for (const [line, why] of bad) {
      for (const result of [feedAll(body(line)), feedBytewise(body(line))]) {
        expect(result, JSON.stringify(line)).toMatchObject({ code: 'trailer-field' });
        expect('error' in result && result.error, JSON.stringify(line)).toMatch(why);
      }
    }
  });

  it('bounds the trailer section', () => {
    const many = Array.from({ length: MAX_TRAILER_FIELDS + 1 }, (_, i) => `X-${i}: 1\r\n`).join('');
    expect(feedAll(`0\r\n${many}\r\n`)).toMatchObject({ code: 'trailer-too-large', error: `more than ${MAX_TRAILER_FIELDS} trailer fields` });
    expect(feedAll(`0\r\nX: ${'a'.repeat(MAX_TRAILER_BYTES)}\r\n\r\n`)).toMatchObject({ code: 'trailer-too-large' });
  });
});

describe('targets and IP literals', () => {
  it('normalises every IPv4 spelling and IPv6 form', () => {
    for (const s of ['127.0.0.1', '2130706433', '0x7f.1', '127.1', '0177.0.0.1', '017700000001', '0x7f000001', '127.0.0.1.']) {
      expect(classifyHostLiteral(s), s).toEqual({ kind: 'ip', address: '127.0.0.1', family: 4 });
    }
    expect(classifyHostLiteral('[::ffff:127.0.0.1]')).toEqual({ kind: 'ip', address: '::ffff:7f00:1', family: 6 });
    expect(classifyHostLiteral('[0:0:0:0:0:0:0:1]')).toEqual({ kind: 'ip', address: '::1', family: 6 });
    for (const s of ['1.2.3.4.5', '256.1.1.1', '08.1.1.1', '1.2.3.0x', '[fe80::1%eth0]', '[::g]']) expect(classifyHostLiteral(s).kind, s).toBe('invalid');
    for (const s of ['api.example.com', '1.2.3.example', 'x1']) expect(classifyHostLiteral(s).kind, s).toBe('name');
  });

  it('parses CONNECT authorities strictly', () => {
    expect(parseConnectTarget('API.Example.COM.:443')).toEqual({ ok: true, host: 'api.example.com', port: 443, ip: false });
    expect(parseConnectTarget('[2001:db8::1]:8443')).toEqual({ ok: true, host: '2001:db8::1', port: 8443, ip: true });
    expect(parseConnectTarget('0x7f.1:22')).toEqual({ ok: true, host: '127.0.0.1', port: 22, ip: true });
    expect(parseConnectTarget('bücher.example:443')).toMatchObject({ ok: true, host: 'xn--bcher-kva.example' });
    // A URL parser stops a host at "/", "\\", "?" or "#": "a/b.example" once became host "a".
    for (const t of ['api.example.com', 'api.example.com:0', 'api.example.com:65536', 'a:b:443', '[::1:443', 'a_b$:443', ':443', 'a..b:443', 'a/b.example:443', 'a\\b.example:443', 'a?b.example:443', 'a#b.example:443', 'a%2fb.example:443']) {
      expect(parseConnectTarget(t).ok, t).toBe(false);
    }
  });

  it('parses absolute-form URLs; https asks for CONNECT; credentials and fragments refused', () => {
    expect(parseAbsoluteTarget('http://Rest.Example/v1/x?y=1')).toEqual({ ok: true, host: 'rest.example', port: 80, ip: false, path: '/v1/x?y=1', authority: 'rest.example' });
    expect(parseAbsoluteTarget('http://a.example:8080')).toMatchObject({ port: 8080, path: '/', authority: 'a.example:8080' });
    expect(parseAbsoluteTarget('http://[::1]:81/')).toMatchObject({ host: '::1', authority: '[::1]:81' });
    expect(parseAbsoluteTarget('https://a.example/')).toMatchObject({ ok: false, useConnect: true });
    for (const t of ['/relative', 'ftp://a.example/', 'http://u:p@a.example/', 'http://a.example/#f', 'http://a.example:x/', 'http://a.example\\b/']) expect(parseAbsoluteTarget(t).ok, t).toBe(false);
  });

  it('an absolute-form path comes out canonical, or the target is refused', () => {
    expect(parseAbsoluteTarget('http://a.example/v1/%61dmin//x/./y/../z?q=%2e%2e')).toMatchObject({ ok: true, path: '/v1/admin/x/z?q=%2e%2e' });
    expect(parseAbsoluteTarget('http://a.example?x=1')).toMatchObject({ ok: true, path: '/?x=1' });
    expect(parseAbsoluteTarget('http://a.example/v1/x/%2e%2e/admin')).toMatchObject({ ok: false, message: expect.stringMatching(/encoded dot segment/) });
    expect(parseAbsoluteTarget('http://a.example/v1/x/..;/admin')).toMatchObject({ ok: false, message: expect.stringMatching(/path parameter/) });
  });
});

describe('ClientHello', () => {
  it('takes the server name from a real Node ClientHello; none when the client sent none', () => {
    expect(parseClientHello(hello)).toMatchObject({ status: 'ok', serverName: 'api.example.com', length: hello.length });
    expect(parseClientHello(helloNoSni)).toMatchObject({ status: 'ok', serverName: null });
    for (const n of [1, 5, 20, hello.length - 1]) expect(parseClientHello(hello.subarray(0, n)).status, String(n)).toBe('incomplete');
  });

  it('reassembles a ClientHello split over two TLS records', () => {
    const body = hello.subarray(5);
    const cut = 40;
    const record = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 255]), b]);
    const split = Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))]);
    expect(parseClientHello(split)).toMatchObject({ status: 'ok', serverName: 'api.example.com' });
  });

  it('refuses non-TLS bytes, oversize hellos and a bad server name', () => {
    expect(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n'))).toMatchObject({ status: 'error' });
    expect(parseClientHello(hello, 100)).toMatchObject({ status: 'error' });
    const at = hello.indexOf(Buffer.from('api.example.com'));
    const broken = Buffer.from(hello);
    broken[at + 3] = 0x20; // a space inside the name
    expect(parseClientHello(broken)).toMatchObject({ status: 'error' });
  });
});

describe('SSRF classes', () => {
  it('classifies every special range and passes public addresses', () => {
    const cases: Record<string, string> = {
      '127.0.0.1': 'loopback', '10.0.0.1': 'private', '172.31.255.255': 'private', '192.168.0.1': 'private',
      '100.64.0.1': 'cgnat', '169.254.169.254': 'link-local', '224.0.0.251': 'multicast', '0.0.0.0': 'unspecified',
      '255.255.255.255': 'broadcast', '240.0.0.1': 'reserved', '192.0.2.5': 'documentation', '198.51.100.5': 'documentation',
      '203.0.113.5': 'documentation', '198.19.255.1': 'benchmarking', '192.0.0.8': 'reserved',
      '::1': 'loopback', '::': 'unspecified', 'fc00::1': 'unique-local', 'fd12::1': 'unique-local', 'fe80::1': 'link-local',
      'fec0::1': 'site-local', 'ff02::1': 'multicast', '2001:db8::1': 'documentation', '::ffff:11.22.33.44': 'ipv4-mapped',
      '64:ff9b::808:808': 'nat64', '64:ff9b:1::1': 'nat64', '2002:808:808::1': '6to4', '2001::1': 'teredo', '::102:304': 'ipv4-compatible',
      '4000::1': 'reserved', 'not-an-ip': 'invalid',
    };
    for (const [address, cls] of Object.entries(cases)) expect(forbiddenAddressClass(address), address).toBe(cls);
    for (const address of ['11.22.33.44', '12.34.56.78', '11.0.113.7', '2a0b:1::1', '2a00:1450::1']) expect(forbiddenAddressClass(address), address).toBeNull();
  });

  it('refuses when any address is refused; allowed_ips exempts classes but never the proxy itself', () => {
    expect(checkAddresses(['11.22.33.44', '10.0.0.1'], new Set(), false)).toMatchObject({ ok: false, address: '10.0.0.1', cls: 'private' });
    expect(checkAddresses(['10.0.0.1'], new Set(), true)).toEqual({ ok: true });
    expect(checkAddresses(['10.0.0.1'], new Set(['10.0.0.1']), true)).toMatchObject({ ok: false, cls: 'proxy-own-address' });
  });
});

// Fuzzing. Each known defect is injected into an otherwise valid input, and the parser must give
// that defect's own refusal (code and message), not merely some answer; random mutations must
// never crash, every refusal must be one of the parser's known ones with its own code, and what
// is accepted must really be well-formed.

const MAX_HEAD = DEFECT_MAX_HEAD;
const CRLFCRLF = Buffer.from('\r\n\r\n');

function answerTo(buf: Buffer): HeadAnswer {
  const head = parseRequestHead(buf, MAX_HEAD);
  if (head.status === 'incomplete') return { stage: 'incomplete' };
  if (head.status === 'error') return { stage: 'head', code: head.code, message: head.message };
  const target = head.head.method === 'CONNECT' ? parseConnectTarget(head.head.target) : parseAbsoluteTarget(head.head.target);
  if (!target.ok) return { stage: 'target', message: target.message };
  const framing = requestBodyFraming(head.head);
  if (framing.kind === 'error') return { stage: 'framing', code: framing.code, message: framing.message };
  return { stage: 'ok' };
}

// Every refusal parseRequestHead and requestBodyFraming can give, with its status code.
const HEAD_REFUSALS: Array<[number, RegExp]> = [
  [400, /^line endings must be CRLF$/],
  [400, /^request line must be "METHOD target HTTP\/1\.1"$/],
  [400, /^invalid method$/],
  [400, /^invalid request target$/],
  [400, /^invalid protocol version$/],
  [400, /^empty header line$/],
  [400, /^folded header lines are not accepted$/],
  [400, /^header line without a name$/],
  [400, /^invalid header name$/],
  [400, /^invalid characters in header [!#$%&'*+\-.^_`|~0-9A-Za-z]+$/],
  [431, new RegExp(`^request head larger than ${MAX_HEAD} bytes$`)],
  [431, /^more than 100 header fields$/],
  [501, /^HTTP\/\d\.\d is not supported$/],
];
const FRAMING_REFUSALS: Array<[number, RegExp]> = [
  [400, /^both Transfer-Encoding and Content-Length given$/],
  [400, /^conflicting Content-Length values$/],
  [400, /^invalid Content-Length$/],
  [501, /^only "Transfer-Encoding: chunked" is supported$/],
];

function isKnownRefusal(catalogue: Array<[number, RegExp]>, code: number, message: string): boolean {
  return catalogue.some(([c, pattern]) => c === code && pattern.test(message));
}

describe('fuzzing', () => {
  it('a valid head is accepted (the base every defect below is injected into)', () => {
    fc.assert(
      fc.property(validHeadParts(), (h) => {
        expect(answerTo(Buffer.from(headText(h), 'latin1'))).toEqual({ stage: 'ok' });
      }),
      { numRuns: 5_000 },
    );
  });

  it('each known defect gets its own refusal: 20,000 heads with bare LF, obs-fold, bad tokens, conflicting lengths, CL+TE, walk-around paths…', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(headDefects(), (d) => {
        seen.add(d.name);
        const got = answerTo(Buffer.from(d.text, 'latin1'));
        if (d.expected.stage === 'target') {
          expect(got.stage, d.name).toBe('target');
          expect(got.stage === 'target' && got.message, d.name).toMatch(d.expected.pattern);
        } else expect(got, `${d.name}: ${JSON.stringify(d.text)}`).toEqual(d.expected);
      }),
      { numRuns: 20_000 },
    );
    expect(seen.size).toBe(DEFECT_CLASSES);
  });

  const validHead = 'CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Connection: keep-alive\r\n\r\n';
  const mutate = (base: Buffer) =>
    fc
      .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete', 'truncate')), { minLength: 1, maxLength: 6 })
      .map((edits) => {
        let b = Buffer.from(base);
        for (const [at, byte, op] of edits) {
          const i = b.length === 0 ? 0 : at % b.length;
          if (op === 'set' && b.length > 0) b[i] = byte;
          else if (op === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
          else if (op === 'delete') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
          else b = b.subarray(0, i);
        }
        return b;
      });

  it('100,000 malformed request heads: no crash, only known refusals with their own codes, and what is accepted is well-formed', () => {
    const piece = fc.constantFrom('GET', 'CONNECT', ' ', '\r\n', '\n', '\r', ':', 'http://', 'https://', 'a.example', '[::1]', ':443', 'HTTP/1.1', 'Host', '\t', '\x00', '\xff', '%', '/', '?', '#', '@', 'Content-Length: 1', 'Transfer-Encoding: chunked');
    const heads = fc.oneof(
      mutate(Buffer.from(validHead)),
      validHeadParts().chain((h) => mutate(Buffer.from(headText(h), 'latin1'))),
      fc.array(piece, { maxLength: 40 }).map((p) => Buffer.from(`${p.join('')}\r\n\r\n`, 'latin1')),
      fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
    );
    fc.assert(
      fc.property(heads, (buf) => {
        const r = parseRequestHead(buf, MAX_HEAD);
        if (r.status === 'incomplete') {
          expect(buf.indexOf(CRLFCRLF)).toBe(-1);
          return;
        }
        if (r.status === 'error') {
          expect(isKnownRefusal(HEAD_REFUSALS, r.code, r.message), `${r.code} ${r.message}`).toBe(true);
          return;
        }
        // Accepted: the head ends at the first CRLFCRLF, with CRLF line ends only, and every part is well-formed.
        expect(buf.indexOf(CRLFCRLF)).toBe(r.length - 4);
        const text = buf.toString('latin1', 0, r.length - 4);
        expect(text.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
        expect(r.head.method).toMatch(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
        expect(r.head.target).toMatch(/^[\x21-\x7e]+$/);
        for (const { name, value } of r.head.headers) {
          expect(name).toMatch(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
          expect(value).toMatch(/^([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/);
        }
        if (r.head.method !== 'CONNECT') {
          const target = parseAbsoluteTarget(r.head.target);
          if (target.ok) expect(canonicalRequestPath(target.path)).toEqual({ ok: true, path: target.path });
        } else parseConnectTarget(r.head.target);
        const framing = requestBodyFraming(r.head);
        if (framing.kind === 'error') expect(isKnownRefusal(FRAMING_REFUSALS, framing.code, framing.message), framing.message).toBe(true);
        if (framing.kind === 'length') expect(Number.isSafeInteger(framing.length) && framing.length >= 0).toBe(true);
      }),
      { numRuns: 100_000 },
    );
  });

  const HELLO_REFUSALS = [
    /^not a TLS handshake record$/,
    /^not a TLS record version$/,
    /^invalid TLS record length$/,
    /^ClientHello larger than 4096 bytes$/,
    /^first handshake message is not a ClientHello$/,
    /^unsupported ClientHello version$/,
    /^session id too long$/,
    /^invalid cipher suite list$/,
    /^invalid compression method list$/,
    /^trailing bytes after extensions$/,
    /^duplicate extension \d+$/,
    /^malformed server_name extension$/,
    /^more than one host name in server_name$/,
    /^server_name is not a valid host name$/,
    /^server_name extension without a host name$/,
    /^truncated ClientHello$/,
  ];

  it('each known ClientHello defect gets its own refusal; every prefix waits for more', () => {
    const at = () => hello.indexOf(Buffer.from('api.example.com'));
    const withBytes = (edits: Array<[number, number]>) => {
      const b = Buffer.from(hello);
      for (const [i, v] of edits) b[i] = v;
      return b;
    };
    const defectsOfHello = fc.oneof(
      fc.integer({ min: 0, max: 255 }).filter((v) => v !== 22).map((v) => ({ buf: withBytes([[0, v]]), message: 'not a TLS handshake record' })),
      fc.integer({ min: 0, max: 255 }).filter((v) => v !== 3).map((v) => ({ buf: withBytes([[1, v]]), message: 'not a TLS record version' })),
      fc.oneof(fc.constant(0), fc.integer({ min: 16384 + 2049, max: 65535 })).map((n) => ({ buf: withBytes([[3, n >> 8], [4, n & 255]]), message: 'invalid TLS record length' })),
      fc.integer({ min: 0, max: 255 }).filter((v) => v !== 1).map((v) => ({ buf: withBytes([[5, v]]), message: 'first handshake message is not a ClientHello' })),
      fc.tuple(fc.nat(14), fc.constantFrom(0x20, 0x00, 0x2f, 0x40, 0x7f, 0xff, 0x5c, 0x2c, 0x3b)).map(([i, v]) => ({ buf: withBytes([[at() + i, v]]), message: 'server_name is not a valid host name' })),
      fc.integer({ min: 6, max: 4095 }).filter((max) => max < hello.length).map((max) => ({ buf: hello, max, message: `ClientHello larger than ${max} bytes` })),
    );
    fc.assert(
      fc.property(defectsOfHello, (d) => {
        expect(parseClientHello(d.buf, 'max' in d ? d.max : 4096)).toEqual({ status: 'error', message: d.message });
      }),
      { numRuns: 10_000 },
    );
    for (let n = 0; n < hello.length; n++) expect(parseClientHello(hello.subarray(0, n), 4096).status, String(n)).toBe('incomplete');
  });

  it('100,000 malformed ClientHellos: no crash, only known refusals, and a server name that is a canonical host', () => {
    const hellos = fc.oneof(
      { weight: 3, arbitrary: fc.constant(0).chain(() => mutate(hello)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.concat([Buffer.from([22, 3, 1]), Buffer.from(a)])) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
    );
    fc.assert(
      fc.property(hellos, (buf) => {
        const r = parseClientHello(buf, 4096);
        if (r.status === 'error') expect(HELLO_REFUSALS.some((p) => p.test(r.message)), r.message).toBe(true);
        if (r.status === 'ok') {
          expect(r.length).toBeLessThanOrEqual(buf.length);
          if (r.serverName !== null) expect(parseHost(r.serverName)).toMatchObject({ ok: true, host: r.serverName });
        }
      }),
      { numRuns: 100_000 },
    );
  });

  it('chunked bodies: each known defect gets its own code, and nothing at or after it is counted as body', () => {
    const cases = fc.tuple(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 4 }), fc.nat(), fc.array(fc.nat(), { maxLength: 5 })).chain(([parts, c, cuts]) => {
      const prefix = Buffer.concat(parts.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), Buffer.from(p), Buffer.from('\r\n')]));
      const trailer = ['X Y: 1', ' fold: 1', 'NoColon', 'X: a\x00', 'Content-Length: 1', 'Transfer-Encoding: chunked', 'Host: b'][c % 7]!;
      // Each defect with the index of its first bad byte (for a trailer line, the LF that ends it).
      const defects: Array<[string, number, ChunkedErrorCode]> = [
        [`${['x', 'g', '-', ' ', ';'][c % 5]!}\r\n`, 0, 'chunk-size'],
        [`${'0'.repeat(16)}1\r\n`, 16, 'chunk-size-too-large'],
        [`${(2 ** 40 + 1 + (c % 1000)).toString(16)}\r\n`, 10, 'chunk-size-too-large'],
        ['fffffffffffffff\r\n', 10, 'chunk-size-too-large'],
        [`3;x${'\x00\x01\x7f\n'[c % 4]!}\r\n`, 3, 'chunk-extension'],
        ['3\r\nabcX', 6, 'line-ending'],
        ['3\nabc\r\n', 1, 'chunk-size'],
        [`0\r\n${trailer}\r\n\r\n`, 3 + trailer.length + 1, 'trailer-field'],
        ['0\r\nX: 1\n', 7, 'line-ending'],
      ];
      const [defect, bad, code] = defects[c % defects.length]!;
      return fc.constant({ wire: Buffer.concat([prefix, Buffer.from(defect, 'latin1'), Buffer.from('GET http://smuggled/ HTTP/1.1\r\n\r\n')]), bad: prefix.length + bad, code, cuts });
    });
    fc.assert(
      fc.property(cases, ({ wire, bad, code, cuts }) => {
        const scanner = new ChunkedBodyScanner();
        const points = [...new Set(cuts.map((x) => x % wire.length))].sort((a, b) => a - b);
        let consumed = 0;
        let from = 0;
        for (const to of [...points, wire.length]) {
          if (to <= from) continue;
          const fed = scanner.feed(wire.subarray(from, to));
          if ('error' in fed) {
            expect(fed.code).toBe(code);
            // Nothing from the first bad byte on was handed on as body.
            expect(consumed).toBeLessThanOrEqual(bad);
            return;
          }
          expect(fed.done).toBe(false);
          consumed += fed.consumed;
          from = to;
        }
        throw new Error(`no refusal for a ${code} defect`);
      }),
      { numRuns: 20_000 },
    );
  });
});
