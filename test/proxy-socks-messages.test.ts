// The SOCKS5 messages (src/proxy/socks-messages.ts): greeting, RFC 1929 credentials and request
// read from chunks as they arrive (any split gives the answer the whole bytes give), the
// address types taken as a CONNECT host is, the server's replies, and the reply code of each
// refusal. Malformed input in bulk is test/proxy-socks-fuzz.test.ts's.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { socksInspectionRefusal } from '../src/proxy/paths/socks.js';
import {
  chooseMethod,
  parseCredentials,
  parseGreeting,
  parseRequest,
  replyCodeFor,
  REPLY,
  SocksMessageReader,
  socksReply,
  type MessageParse,
} from '../src/proxy/socks-messages.js';

function request(atyp: number, address: Buffer, port: number, command = 1): Buffer {
  return Buffer.concat([Buffer.from([5, command, 0, atyp]), address, Buffer.from([port >> 8, port & 255])]);
}

function domain(name: string | Buffer): Buffer {
  const bytes = typeof name === 'string' ? Buffer.from(name) : name;
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

function feedAll<T>(parse: (b: Buffer) => MessageParse<T>, chunks: Buffer[]): { answer: MessageParse<T>; rest: Buffer } {
  const reader = new SocksMessageReader(parse);
  let answer: MessageParse<T> = { status: 'incomplete' };
  for (const chunk of chunks) {
    answer = reader.feed(chunk);
    if (answer.status !== 'incomplete') break;
  }
  const rest = answer.status === 'ok' ? reader.received().subarray(answer.length) : Buffer.alloc(0);
  return { answer, rest };
}

describe('SOCKS5 greeting and method', () => {
  it('reads the offered methods; picks no-auth first, then username/password, else none acceptable', () => {
    expect(parseGreeting(Buffer.from([5, 2, 0, 2]))).toEqual({ status: 'ok', message: { methods: [0, 2] }, length: 4 });
    expect(chooseMethod([2, 0])).toBe(0x00);
    expect(chooseMethod([1, 2])).toBe(0x02);
    expect(chooseMethod([1, 3, 0x80])).toBe(0xff);
    expect(parseGreeting(Buffer.from([5, 0]))).toMatchObject({ status: 'error' });
    expect(parseGreeting(Buffer.from([4, 1, 0]))).toMatchObject({ status: 'error' });
    expect(parseGreeting(Buffer.from([5, 3, 0, 2]))).toEqual({ status: 'incomplete' });
  });

  it('reads RFC 1929 credentials by their lengths without returning them', () => {
    const creds = Buffer.concat([Buffer.from([1, 4]), Buffer.from('user'), Buffer.from([6]), Buffer.from('secret')]);
    const parsed = parseCredentials(creds);
    expect(parsed).toEqual({ status: 'ok', message: {}, length: creds.length });
    expect(JSON.stringify(parsed)).not.toContain('secret');
    expect(parseCredentials(Buffer.from([1, 0, 0]))).toEqual({ status: 'ok', message: {}, length: 3 });
    expect(parseCredentials(creds.subarray(0, creds.length - 1))).toEqual({ status: 'incomplete' });
    expect(parseCredentials(Buffer.from([5, 1, 0]))).toMatchObject({ status: 'error' });
  });
});

describe('SOCKS5 request', () => {
  it('takes IPv4, IPv6 and names as CONNECT hosts: canonical, an address spelled as a name is that address', () => {
    expect(parseRequest(request(1, Buffer.from([203, 0, 113, 9]), 443))).toEqual({
      status: 'ok',
      message: { command: 1, host: '203.0.113.9', port: 443, ip: true },
      length: 10,
    });
    const v6 = Buffer.alloc(16);
    v6[0] = 0x20;
    v6[1] = 0x01;
    v6[2] = 0x0d;
    v6[3] = 0xb8;
    v6[15] = 1;
    expect(parseRequest(request(4, v6, 22))).toMatchObject({ status: 'ok', message: { host: '2001:db8::1', port: 22, ip: true } });
    const mapped = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    expect(parseRequest(request(4, mapped, 80))).toMatchObject({ status: 'ok', message: { host: '::ffff:7f00:1', ip: true } });
    expect(parseRequest(request(3, domain('API.Example.COM.'), 443))).toMatchObject({ status: 'ok', message: { host: 'api.example.com', ip: false } });
    expect(parseRequest(request(3, domain('bücher.example'), 443))).toMatchObject({ status: 'ok', message: { host: 'xn--bcher-kva.example' } });
    expect(parseRequest(request(3, domain('0x7f.1'), 80))).toMatchObject({ status: 'ok', message: { host: '127.0.0.1', ip: true } });
    expect(parseRequest(request(3, domain('[::1]'), 80))).toMatchObject({ status: 'ok', message: { host: '::1', ip: true } });
  });

  it('refuses what a CONNECT host refuses, unknown address types (0x08), port 0 and a non-zero reserved byte', () => {
    for (const bad of ['', 'a/b.example', 'evil.example:80', 'a b', 'x@y', '*.example', 'a..b']) {
      expect(parseRequest(request(3, domain(bad), 443)), bad).toMatchObject({ status: 'error', reply: REPLY.generalFailure });
    }
    expect(parseRequest(request(3, domain(Buffer.from([0x61, 0xff, 0x62])), 443))).toMatchObject({ status: 'error', message: expect.stringContaining('UTF-8') });
    expect(parseRequest(request(3, domain(Buffer.from('a\0b.example')), 443))).toMatchObject({ status: 'error' });
    expect(parseRequest(Buffer.from([5, 1, 0, 2, 1, 2, 3, 4, 0, 80]))).toMatchObject({ status: 'error', reply: REPLY.addressTypeNotSupported });
    expect(parseRequest(request(1, Buffer.from([1, 2, 3, 4]), 0))).toMatchObject({ status: 'error', message: expect.stringContaining('port 0') });
    expect(parseRequest(Buffer.from([5, 1, 1, 1, 1, 2, 3, 4, 0, 80]))).toMatchObject({ status: 'error', message: expect.stringContaining('reserved') });
    expect(parseRequest(Buffer.from([4, 1, 0, 1]))).toMatchObject({ status: 'error' });
  });

  it('reads BIND and UDP ASSOCIATE whole (the path answers them 0x07)', () => {
    expect(parseRequest(request(1, Buffer.from([1, 2, 3, 4]), 80, 2))).toMatchObject({ status: 'ok', message: { command: 2 } });
    expect(parseRequest(request(1, Buffer.from([1, 2, 3, 4]), 80, 3))).toMatchObject({ status: 'ok', message: { command: 3 } });
  });

  it('gives the same answer for any split, and keeps what follows the message', () => {
    const whole = Buffer.concat([request(3, domain('git.example.org'), 22), Buffer.from('SSH-2.0-client\r\n')]);
    const expected = parseRequest(whole);
    fc.assert(
      fc.property(fc.array(fc.nat(whole.length), { maxLength: 12 }), (points) => {
        const at = [...new Set(points)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let from = 0;
        for (const p of [...at, whole.length]) {
          if (p > from) chunks.push(whole.subarray(from, p));
          from = Math.max(from, p);
        }
        const { answer, rest } = feedAll(parseRequest, chunks);
        expect(answer).toEqual(expected);
        // The rest is what came after the request in the chunks fed so far (the reader stops at its answer).
        expect(Buffer.from('SSH-2.0-client\r\n').subarray(0, rest.length).equals(rest)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('SOCKS5 replies', () => {
  it('carries the bound address in its family, or 0.0.0.0:0', () => {
    expect([...socksReply(0, { address: '10.1.2.3', port: 0x1234 })]).toEqual([5, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34]);
    expect([...socksReply(0, { address: '2001:db8::2', port: 80 })]).toEqual([5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, ...Array(11).fill(0), 2, 0, 80]);
    expect([...socksReply(2)]).toEqual([5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('answers each refusal with its code', () => {
    const code = (kind: Parameters<typeof replyCodeFor>[0]['kind'], detail = ''): number => replyCodeFor({ kind, detail });
    expect(code('policy_denied')).toBe(0x02);
    expect(code('ssrf_denied')).toBe(0x02);
    expect(code('inspection_unavailable')).toBe(0x02);
    expect(code('integrity_violation')).toBe(0x02);
    expect(code('dns_failed')).toBe(0x04);
    expect(code('upstream_unreachable', '203.0.113.5 port 22: ECONNREFUSED')).toBe(0x05);
    expect(code('upstream_unreachable', '203.0.113.5 port 22: EHOSTUNREACH')).toBe(0x04);
    expect(code('upstream_unreachable', '203.0.113.5 port 22: ENETUNREACH')).toBe(0x03);
    expect(code('upstream_unreachable', '203.0.113.5 port 22: ECONNRESET')).toBe(0x01);
    expect(code('upstream_timeout')).toBe(0x06);
    expect(code('too_many_connections')).toBe(0x01);
    expect(code('audit_unavailable')).toBe(0x01);
  });
});

describe('SOCKS5 and TLS inspection', () => {
  it('an allow that wants the tunnel inspected is refused over SOCKS, whether or not the proxy could inspect a CONNECT', () => {
    const facts = { host: 'rest.example', port: 443, ip: false };
    const refused = socksInspectionRefusal({ allow: true, decision: 'allow', reason: 'ok', policy: 'api', inspect: true }, facts);
    expect(refused).toMatchObject({ allow: false, decision: 'deny', policy: 'api' });
    expect(refused!.reason).toMatch(/rest\.example:443 .*TLS-inspected.*SOCKS5 tunnel is relayed opaque/);
    expect(socksInspectionRefusal({ allow: true, decision: 'allow', reason: 'ok', policy: 'api', inspect: false }, facts)).toBeNull();
    expect(socksInspectionRefusal({ allow: true, decision: 'allow', reason: 'ok', policy: 'api' }, facts)).toBeNull();
    // A would-deny let through in report-only carries no inspect: it stays let through.
    expect(socksInspectionRefusal({ allow: true, decision: 'audit', reason: 'report-only, would deny: x', policy: 'api' }, facts)).toBeNull();
    expect(socksInspectionRefusal({ allow: false, decision: 'deny', reason: 'no', policy: null, inspect: true }, facts)).toBeNull();
  });
});
