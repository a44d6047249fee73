// The incremental readers of a connection's first message (src/proxy/http-head.ts,
// src/proxy/client-hello.ts): bytes arriving one at a time cost the same work as one chunk —
// each byte looked at once, the message parsed once — and any split gives the answer the whole
// bytes give.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClientHelloReader, parseClientHello, type HelloParse } from '../src/proxy/client-hello.js';
import { parseRequestHead, RequestHeadReader, type HeadParse } from '../src/proxy/http-head.js';

/** Feeds `chunks` until the reader answers; the answer and the number of chunks it took. */
function feedUntilAnswer<R extends { status: string }>(reader: { feed(chunk: Buffer): R }, chunks: Buffer[]): { answer: R; fed: number } {
  for (let i = 0; i < chunks.length; i++) {
    const answer = reader.feed(chunks[i]!);
    if (answer.status !== 'incomplete') return { answer, fed: i + 1 };
  }
  return { answer: { status: 'incomplete' } as R, fed: chunks.length };
}

function bytewise(buffer: Buffer): Buffer[] {
  return Array.from({ length: buffer.length }, (_, i) => buffer.subarray(i, i + 1));
}

/** `buffer` cut at the given points (taken modulo its length). */
function cut(buffer: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buffer.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...at, buffer.length]) {
    if (p > from) out.push(buffer.subarray(from, p));
    from = Math.max(from, p);
  }
  return out;
}

/** A TLS ClientHello naming `serverName`, padded (extension 21) to about `padding` more bytes. */
function syntheticHello(serverName: string, padding: number): Buffer {
  const name = Buffer.from(serverName);
  const sniList = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const sni = Buffer.concat([u16(0), u16(sniList.length + 2), u16(sniList.length), sniList]);
  const pad = Buffer.concat([u16(21), u16(padding), Buffer.alloc(padding)]);
  const extensions = Buffer.concat([sni, pad]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // session id
    u16(2),
    Buffer.from([0x13, 0x01]), // one cipher suite
    Buffer.from([1, 0]), // null compression
    u16(extensions.length),
    extensions,
  ]);
  return Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body]);
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 255]);
}

/** The handshake message carried in TLS records of `size` bytes each. */
function inRecords(message: Buffer, size: number): Buffer {
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const fragment = message.subarray(at, at + size);
    records.push(Buffer.from([22, 3, 1]), u16(fragment.length), fragment);
  }
  return Buffer.concat(records);
}

describe('request head reader', () => {
  it('reads a 256 KiB head fed one byte at a time with one look at each byte and one parse', () => {
    const fields = Array.from({ length: 64 }, (_, i) => `X-Field-${i}: ${String(i % 10).repeat(4096)}\r\n`).join('');
    const head = Buffer.from(`POST http://api.example/upload HTTP/1.1\r\nHost: api.example\r\n${fields}Content-Length: 4\r\n\r\n`, 'latin1');
    expect(head.length).toBeGreaterThan(256 * 1024);
    const input = Buffer.concat([head, Buffer.from('body')]);
    const reader = new RequestHeadReader(1024 * 1024);
    const { answer, fed } = feedUntilAnswer<HeadParse>(reader, bytewise(input));
    expect(fed).toBe(head.length);
    expect(answer).toMatchObject({ status: 'ok', length: head.length, head: { method: 'POST', target: 'http://api.example/upload' } });
    if (answer.status === 'ok') expect(answer.head.headers).toHaveLength(66);
    expect(reader.scanned).toBe(head.length);
    expect(reader.parses).toBe(1);
    expect(reader.received().equals(head)).toBe(true);
  });

  it('scans no further than the size limit, however much arrives', () => {
    const reader = new RequestHeadReader(1000);
    expect(reader.feed(Buffer.alloc(600, 'a'))).toEqual({ status: 'incomplete' });
    expect(reader.feed(Buffer.alloc(1 << 20, 'a'))).toMatchObject({ status: 'error', code: 431 });
    expect(reader.scanned).toBe(1000);
    expect(reader.parses).toBe(0);
  });

  it('answers, for any split of the bytes, what the bytes up to its answer give in one piece', () => {
    const valid = 'POST http://a.example/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n';
    const piece = fc.constantFrom('GET', ' ', '\r\n', '\r\n\r\n', '\n', '\r', ':', 'http://a/', 'HTTP/1.1', 'Host', '\t', 'x'.repeat(40));
    const inputs = fc.oneof(
      fc.array(piece, { maxLength: 40 }).map((p) => Buffer.from(p.join(''), 'latin1')),
      fc.tuple(fc.nat(valid.length), fc.constantFrom('\n', '\r', 'x', ' ', '\r\n')).map(([at, s]) => Buffer.from(valid.slice(0, at) + s + valid.slice(at), 'latin1')),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    );
    let answered = 0;
    fc.assert(
      fc.property(inputs, fc.array(fc.nat(), { maxLength: 10 }), fc.constantFrom(64, 120, 4096), (input, points, max) => {
        const chunks = cut(input, points);
        const { answer, fed } = feedUntilAnswer<HeadParse>(new RequestHeadReader(max), chunks);
        const upTo = Buffer.concat(chunks.slice(0, fed));
        expect(answer).toEqual(answer.status === 'incomplete' ? parseRequestHead(input, max) : parseRequestHead(upTo, max));
        if (answer.status !== 'incomplete') {
          answered++;
          expect(parseRequestHead(Buffer.concat(chunks.slice(0, fed - 1)), max).status).toBe('incomplete');
        }
      }),
      { numRuns: 20_000 },
    );
    expect(answered).toBeGreaterThan(5_000);
  });
});

describe('ClientHello reader', () => {
  it('reads a 40 KiB hello in 1 KiB records, fed one byte at a time, taking each byte once and parsing once', () => {
    const hello = inRecords(syntheticHello('api.example.com', 40_000), 1024);
    const reader = new ClientHelloReader(65536);
    const { answer, fed } = feedUntilAnswer<HelloParse>(reader, bytewise(Buffer.concat([hello, Buffer.from('after')])));
    expect(answer).toEqual({ status: 'ok', serverName: 'api.example.com', length: hello.length });
    expect(fed).toBe(hello.length);
    expect(reader.taken).toBe(hello.length);
    expect(reader.parses).toBe(1);
  });

  it('reads a hello cut into one-byte records (a record per byte), fed one byte at a time, in linear work', () => {
    const message = syntheticHello('api.example.com', 2_000);
    const hello = inRecords(message, 1);
    expect(hello.length).toBe(6 * message.length);
    const reader = new ClientHelloReader(65536);
    const { answer } = feedUntilAnswer<HelloParse>(reader, bytewise(hello));
    expect(answer).toEqual({ status: 'ok', serverName: 'api.example.com', length: hello.length });
    expect(reader.taken).toBe(hello.length);
    expect(reader.parses).toBe(1);
  });

  it('answers, for any split of the bytes, what the bytes up to its answer give in one piece', () => {
    const message = syntheticHello('api.example.com', 100);
    const samples = [inRecords(message, 4096), inRecords(message, 7), inRecords(message, 1)];
    const inputs = fc.oneof(
      fc.tuple(fc.constantFrom(...samples), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 })).map(([base, flips]) => {
        const b = Buffer.from(base);
        for (const [at, byte] of flips) b[at % b.length] = byte;
        return b;
      }),
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.concat([Buffer.from([22, 3, 1]), Buffer.from(a)])),
    );
    let answered = 0;
    fc.assert(
      fc.property(inputs, fc.array(fc.nat(), { maxLength: 10 }), fc.constantFrom(200, 600, 65536), (input, points, max) => {
        const chunks = cut(input, points);
        const { answer, fed } = feedUntilAnswer<HelloParse>(new ClientHelloReader(max), chunks);
        const upTo = Buffer.concat(chunks.slice(0, fed));
        expect(answer).toEqual(answer.status === 'incomplete' ? parseClientHello(input, max) : parseClientHello(upTo, max));
        if (answer.status !== 'incomplete') {
          answered++;
          expect(parseClientHello(Buffer.concat(chunks.slice(0, fed - 1)), max).status).toBe('incomplete');
        }
      }),
      { numRuns: 20_000 },
    );
    expect(answered).toBeGreaterThan(5_000);
  });
});
