// The proxy's pure parsers: request heads, targets, IP literals, ClientHellos and the SSRF
// classes — examples, then fuzzing (100,000 malformed inputs for each parser).
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBodyScanner, MAX_CHUNK_SIZE, MAX_EXTENSION_BYTES, MAX_TRAILER_BYTES, MAX_TRAILER_FIELDS, type ChunkedErrorCode, type ChunkedFeed } from '../src/proxy/chunked.js';
import { parseClientHello } from '../src/proxy/client-hello.js';
import { parseRequestHead, requestBodyFraming } from '../src/proxy/http-head.js';
import { classifyHostLiteral } from '../src/proxy/ip-literal.js';
import { checkAddresses, forbiddenAddressClass } from '../src/proxy/ssrf.js';
import { parseAbsoluteTarget, parseConnectTarget } from '../src/proxy/target.js';

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
    for (const t of ['api.example.com', 'api.example.com:0', 'api.example.com:65536', 'a:b:443', '[::1:443', 'a_b$:443', ':443', 'a..b:443']) {
      expect(parseConnectTarget(t).ok, t).toBe(false);
    }
  });

  it('parses absolute-form URLs; https asks for CONNECT; credentials and fragments refused', () => {
    expect(parseAbsoluteTarget('http://Rest.Example/v1/x?y=1')).toEqual({ ok: true, host: 'rest.example', port: 80, ip: false, path: '/v1/x?y=1', authority: 'rest.example' });
    expect(parseAbsoluteTarget('http://a.example:8080')).toMatchObject({ port: 8080, path: '/', authority: 'a.example:8080' });
    expect(parseAbsoluteTarget('http://[::1]:81/')).toMatchObject({ host: '::1', authority: '[::1]:81' });
    expect(parseAbsoluteTarget('https://a.example/')).toMatchObject({ ok: false, useConnect: true });
    for (const t of ['/relative', 'ftp://a.example/', 'http://u:p@a.example/', 'http://a.example/#f', 'http://a.example:x/']) expect(parseAbsoluteTarget(t).ok, t).toBe(false);
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
    for (const address of ['11.22.33.44', '12.34.56.78', '11.0.113.7', '2606:4700::1111', '2a00:1450::1']) expect(forbiddenAddressClass(address), address).toBeNull();
  });

  it('refuses when any address is refused; allowed_ips exempts classes but never the proxy itself', () => {
    expect(checkAddresses(['11.22.33.44', '10.0.0.1'], new Set(), false)).toMatchObject({ ok: false, address: '10.0.0.1', cls: 'private' });
    expect(checkAddresses(['10.0.0.1'], new Set(), true)).toEqual({ ok: true });
    expect(checkAddresses(['10.0.0.1'], new Set(['10.0.0.1']), true)).toMatchObject({ ok: false, cls: 'proxy-own-address' });
  });
});

describe('fuzzing (no crash, no hang, a definite answer)', () => {
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

  it('100,000 malformed request heads', () => {
    const piece = fc.constantFrom('GET', 'CONNECT', ' ', '\r\n', '\n', '\r', ':', 'http://', 'https://', 'a.example', '[::1]', ':443', 'HTTP/1.1', 'Host', '\t', '\x00', '\xff', '%', '/', '?', '#', '@');
    const heads = fc.oneof(
      mutate(Buffer.from(validHead)),
      fc.array(piece, { maxLength: 40 }).map((p) => Buffer.from(`${p.join('')}\r\n\r\n`, 'latin1')),
      fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
    );
    fc.assert(
      fc.property(heads, (buf) => {
        const r = parseRequestHead(buf, 4096);
        expect(['incomplete', 'error', 'ok']).toContain(r.status);
        if (r.status === 'ok') {
          const t = r.head.method === 'CONNECT' ? parseConnectTarget(r.head.target) : parseAbsoluteTarget(r.head.target);
          expect(typeof t.ok).toBe('boolean');
          expect(['none', 'length', 'chunked', 'error']).toContain(requestBodyFraming(r.head).kind);
        }
      }),
      { numRuns: 100_000 },
    );
  });

  it('100,000 malformed ClientHellos', () => {
    const hellos = fc.oneof(
      { weight: 3, arbitrary: fc.constant(0).chain(() => mutate(hello)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.concat([Buffer.from([22, 3, 1]), Buffer.from(a)])) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
    );
    fc.assert(
      fc.property(hellos, (buf) => {
        const r = parseClientHello(buf, 4096);
        expect(['incomplete', 'error', 'ok']).toContain(r.status);
        if (r.status === 'ok' && r.serverName !== null) expect(r.serverName).toMatch(/^[a-z0-9_.:-]+$/);
      }),
      { numRuns: 100_000 },
    );
  });
});
