// Fuzzing inspected connections: 20,000 malformed HTTP/2 frame sequences and 20,000 HTTP/1.1
// heads (each with a known defect, many with a second request smuggled behind the first) fed to
// the inspected-connection handlers (fixtures/inspect/fuzz-harness.ts). The policy allows only
// /ok/**: nothing the upstream receives may be anything else (no request gets past its
// decision), the process survives every sequence, and a valid request is served afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from './support/prng.js';
import { FUZZ_HOST, startFuzzHarness, type FuzzHarness } from './fixtures/inspect/fuzz-harness.js';

const SEQUENCES = Number(process.env.FUZZ_SEQUENCES ?? 20_000);
const CONCURRENCY = 48;
let harness: FuzzHarness;

beforeAll(async () => {
  harness = await startFuzzHarness();
}, 60_000);

afterAll(async () => {
  await harness?.close();
});

async function pool<T>(count: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await make(i);
      }
    }),
  );
  return out;
}

// ---- HTTP/1.1 -------------------------------------------------------------------------------

type H1Defect = (rand: () => number, authority: string, i: number) => string;

const smuggled = (authority: string, i: number): string => `GET /denied/${i} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
const pick = <T>(rand: () => number, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;

const H1_DEFECTS: H1Defect[] = [
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled(a, i)}`,
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello${smuggled(a, i)}`,
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${smuggled(a, i)}`,
  (r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nTransfer-Encoding: ${pick(r, ['xchunked', 'chunked, identity', ' chunked', 'chunked\x0b', 'CHUNKED;'])}\r\n\r\n0\r\n\r\n${smuggled(a, i)}`,
  (r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nTransfer-Encoding: chunked\r\n\r\n${pick(r, ['5;\nx', 'g\r\n', '0x5\r\n', '-1\r\n', '5 \r\nhello\r\n', 'ffffffffffffffffff\r\n'])}${smuggled(a, i)}`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\nHost: ${a}\n\n${smuggled(a, i)}`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nX-Fold: a\r\n b\r\n\r\n${smuggled(a, i)}`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost : ${a}\r\n\r\n${smuggled(a, i)}`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nX-Nul: a\x00b\r\n\r\n${smuggled(a, i)}`,
  (r, a, i) => `${pick(r, ['G ET', 'GET\t', 'G\x7fT', ''])} /ok/${i} HTTP/1.1\r\nHost: ${a}\r\n\r\n`,
  (r, a, i) => `GET /ok/${i} ${pick(r, ['HTTP/1.2', 'HTTP/2.0', 'HTTP/1', 'http/1.1', 'HTTP/1.1 x'])}\r\nHost: ${a}\r\n\r\n`,
  (r, _a, i) => `GET /denied/${i}${pick(r, ['', '/../x', '/%2e%2e/ok'])} HTTP/1.1\r\nHost: ${pick(r, ['other.test', 'localhost', '127.0.0.2', ''])}\r\n\r\n`,
  (r, a, i) => `GET ${pick(r, [`/ok/..%2f..%2fdenied/${i}`, `/ok/%2e%2e/denied/${i}`, `/ok/..;/denied/${i}`, `/ok%5c..%5cdenied/${i}`, `//denied/${i}`, `http://other.test/denied/${i}`, `*`])} HTTP/1.1\r\nHost: ${a}\r\n\r\n`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nHost: other.test\r\n\r\n${smuggled(a, i)}`,
  (_r, _a, i) => `GET /denied/${i} HTTP/1.1\r\n\r\n`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n${smuggled(a, i)}`,
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 18446744073709551617\r\n\r\n${smuggled(a, i)}`,
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\nabc${smuggled(a, i)}`,
  // Valid: an allowed request and a pipelined denied one; the second must be decided (403), not forwarded.
  (_r, a, i) => `POST /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 5\r\n\r\nhello${smuggled(a, i)}`,
  (_r, a, i) => `GET /ok/${i} HTTP/1.1\r\nHost: ${a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n${smuggled(a, i)}`,
];

/** One head: a defect, then (half the time) random byte flips in it, then the closing sentinel. */
function h1Case(rand: () => number, authority: string, i: number): Buffer {
  const text = H1_DEFECTS[i % H1_DEFECTS.length]!(rand, authority, i);
  const bytes = Buffer.from(text, 'latin1');
  if (rand() < 0.5) {
    const flips = 1 + Math.floor(rand() * 3);
    for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
  }
  // A denied request with Connection: close ends a connection whose framing held.
  return Buffer.concat([bytes, Buffer.from(`GET /denied/end-${i} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`)]);
}

// ---- HTTP/2 ---------------------------------------------------------------------------------

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, stream: number, payload: Buffer, lengthOverride?: number): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(lengthOverride ?? payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK: literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
function hpack(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0x00, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)])));
}

function requestBlock(path: string, authority: string, method = 'GET'): Buffer {
  return hpack([[':method', method], [':scheme', 'https'], [':path', path], [':authority', authority]]);
}

type H2Mutation = (rand: () => number, authority: string, i: number) => Buffer[];

const randomBytes = (rand: () => number, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));

const H2_MUTATIONS: H2Mutation[] = [
  // Random frames of every type, flags and stream.
  (r) => Array.from({ length: 1 + Math.floor(r() * 5) }, () => frame(Math.floor(r() * 12), Math.floor(r() * 256), pick(r, [0, 1, 2, 3, 0x7fffffff, 0xffffffff]), randomBytes(r, Math.floor(r() * 40)))),
  // A denied request in a HEADERS frame with random damage.
  (r, a, i) => {
    const block = requestBlock(`/denied/${i}`, a);
    block[Math.floor(r() * block.length)] = Math.floor(r() * 256);
    return [frame(1, 0x5, 1, block)];
  },
  // A denied request whose frame length lies.
  (r, a, i) => [frame(1, 0x5, 1, requestBlock(`/denied/${i}`, a), Math.floor(r() * 200))],
  // Padding longer than the frame.
  (_r, a, i) => [frame(1, 0x5 | 0x8, 1, Buffer.concat([Buffer.from([250]), requestBlock(`/denied/${i}`, a)]))],
  // HEADERS on an even (server) stream, on stream 0, reused stream ids.
  (r, a, i) => [frame(1, 0x5, pick(r, [0, 2, 4]), requestBlock(`/ok/${i}`, a))],
  (_r, a, i) => [frame(1, 0x5, 3, requestBlock(`/denied/${i}a`, a)), frame(1, 0x5, 1, requestBlock(`/denied/${i}b`, a))],
  // CONTINUATION without HEADERS; HEADERS without END_HEADERS then something else.
  (_r, a, i) => [frame(9, 0x4, 1, requestBlock(`/denied/${i}`, a))],
  (r, a, i) => [frame(1, 0x1, 1, requestBlock(`/denied/${i}`, a)), frame(Math.floor(r() * 9), 0x4, 1, Buffer.alloc(8))],
  // DATA on stream 0 or on an idle stream; WINDOW_UPDATE of 0; bad SETTINGS.
  (r) => [frame(0, 0x1, pick(r, [0, 5]), randomBytes(r, 10))],
  () => [frame(8, 0, 0, Buffer.alloc(4))],
  (r) => [frame(4, 0, 0, randomBytes(r, 1 + Math.floor(r() * 11)))],
  (_r) => [frame(4, 0, 0, Buffer.from([0, 4, 0xff, 0xff, 0xff, 0xff]))],
  // Pseudo-headers out of order, duplicated, unknown, or a connection header.
  (r, a, i) => [frame(1, 0x5, 1, hpack(pick(r, [
    [['x-a', 'b'], [':method', 'GET'], [':scheme', 'https'], [':path', `/denied/${i}`], [':authority', a]],
    [[':method', 'GET'], [':method', 'POST'], [':scheme', 'https'], [':path', `/denied/${i}`], [':authority', a]],
    [[':method', 'GET'], [':scheme', 'https'], [':path', `/denied/${i}`], [':authority', a], [':bogus', 'x']],
    [[':method', 'GET'], [':scheme', 'https'], [':path', `/denied/${i}`], [':authority', a], ['connection', 'keep-alive']],
    [[':method', 'GET'], [':scheme', 'https'], [':path', `/denied/${i}`], [':authority', a], ['Upper', 'case']],
  ] as Array<Array<[string, string]>>)))],
  // Requests that are well-formed but must be refused: other authority, non-canonical path, CONNECT.
  (r, a, i) => [frame(1, 0x5, 1, requestBlock(pick(r, [`/ok/..%2fdenied/${i}`, `/ok/%2e%2e/denied/${i}`, `/ok/..;/denied/${i}`, `denied/${i}`, `*`]), a))],
  (r, _a, i) => [frame(1, 0x5, 1, requestBlock(`/ok/${i}`, pick(r, ['other.test', 'localhost:1', '127.0.0.1:1', ''])))],
  (_r, a, i) => [frame(1, 0x5, 1, hpack([[':method', 'CONNECT'], [':authority', a]])), frame(1, 0x5, 3, requestBlock(`/denied/${i}`, a))],
  // An allowed request followed by garbage: it may be forwarded, nothing else may.
  (r, a, i) => [frame(1, 0x5, 1, requestBlock(`/ok/${i}`, a)), randomBytes(r, 1 + Math.floor(r() * 30))],
  // RST_STREAM / PRIORITY / PUSH_PROMISE with bad lengths or on stream 0.
  (r) => [frame(pick(r, [2, 3, 5]), 0, pick(r, [0, 1]), randomBytes(r, Math.floor(r() * 9)))],
  // A client that sends no preface at all (the harness always sends one; this one breaks it).
  (r) => [randomBytes(r, 24)],
];

function h2Case(rand: () => number, authority: string, i: number): Buffer {
  const frames = H2_MUTATIONS[i % H2_MUTATIONS.length]!(rand, authority, i);
  // GOAWAY from the client: the session ends once what it started has finished.
  const goaway = frame(7, 0, 0, Buffer.alloc(8));
  const start = i % H2_MUTATIONS.length === H2_MUTATIONS.length - 1 ? [] : [PREFACE, frame(4, 0, 0, Buffer.alloc(0))];
  return Buffer.concat([...start, ...frames, goaway]);
}

describe('fuzzing inspected connections', () => {
  it(`${SEQUENCES} malformed HTTP/1.1 heads: nothing but allowed /ok/ requests reaches the upstream, and the proxy goes on`, async () => {
    const authority = `${FUZZ_HOST}:${harness.upstreamPort}`;
    const rand = prng(0x1f1);
    const cases = Array.from({ length: SEQUENCES }, (_, i) => h1Case(rand, authority, i));
    const answers = await pool(SEQUENCES, (i) => harness.send('h1', cases[i]!));
    expect(harness.forwarded.filter((p) => !p.startsWith('/ok/'))).toEqual([]);
    const statuses = new Map<string, number>();
    for (const a of answers) {
      const s = a.toString('latin1', 9, 12) || 'none';
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    // The defects are refused (400 and kin) far more often than anything is forwarded.
    expect(statuses.get('400') ?? 0).toBeGreaterThan(SEQUENCES / 4);
    const ok = await harness.send('h1', Buffer.from(`GET /ok/after HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`));
    expect(ok.toString()).toMatch(/^HTTP\/1\.1 200/);
    expect(harness.forwarded).toContain('/ok/after');
    console.log(`h1 fuzz: ${harness.forwarded.length} forwarded (all /ok/), answers by status ${JSON.stringify(Object.fromEntries(statuses))}`);
  }, 600_000);

  it(`${SEQUENCES} malformed HTTP/2 frame sequences: nothing but allowed /ok/ requests reaches the upstream, and the proxy goes on`, async () => {
    const before = harness.forwarded.length;
    const authority = `${FUZZ_HOST}:${harness.upstreamPort}`;
    const rand = prng(0x2f2);
    const cases = Array.from({ length: SEQUENCES }, (_, i) => h2Case(rand, authority, i));
    await pool(SEQUENCES, (i) => harness.send('h2', cases[i]!, 400));
    const forwarded = harness.forwarded.slice(before);
    expect(forwarded.filter((p) => !p.startsWith('/ok/'))).toEqual([]);
    const valid = Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, requestBlock('/ok/h2-after', authority)), frame(7, 0, 0, Buffer.alloc(8))]);
    await harness.send('h2', valid);
    expect(harness.forwarded).toContain('/ok/h2-after');
    console.log(`h2 fuzz: ${forwarded.length} forwarded (all /ok/)`);
  }, 600_000);
});
