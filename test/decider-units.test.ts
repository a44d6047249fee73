// The decider protocol's pieces (framing, strict messages, the hello's egress lists) and the
// `portcullis decider` process over real pipes and an inherited socket: verdicts in order, and
// a clear end (exit 1) on anything the protocol does not have.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { egressLists } from '../src/decider/egress-lists.js';
import { encodeFrame, FrameError, FrameReader, MAX_FRAME_BYTES } from '../src/decider/frames.js';
import { parseProxyMessage, verdictReason } from '../src/decider/messages.js';
import { loadPolicyFile } from '../src/policy/load.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
let work: string;
let policyFile: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pc-decider-'));
  policyFile = join(work, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1
network_policies:
  api:
    endpoints:
      - { host: api.example.com, ports: [80, 443] }
      - { host: "api-*.example.net", port: 443 }
      - { host: "**.cdn.example.org", port: 443 }
      - { host: "203.0.113.9", port: 8443 }
  hostless:
    endpoints:
      - { allowed_ips: ["198.51.100.0/30"], port: 5432 }
      - { allowed_ips: ["198.51.0.0/16"], port: 6432 }
`,
  );
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('frames', () => {
  it('hands out the same frames however the bytes are split', () => {
    fc.assert(
      fc.property(fc.array(fc.dictionary(fc.string(), fc.string()), { maxLength: 5 }), fc.array(fc.nat(40), { maxLength: 10 }), (messages, cuts) => {
        const bytes = Buffer.concat(messages.map((m) => encodeFrame(m)));
        const reader = new FrameReader();
        const out: unknown[] = [];
        let at = 0;
        for (const cut of [...cuts, bytes.length]) {
          const end = Math.min(bytes.length, at + cut);
          for (const f of reader.feed(bytes.subarray(at, end))) out.push(JSON.parse(f.toString('utf8')));
          at = end;
        }
        expect(out).toEqual(messages);
        expect(reader.pending).toBe(0);
      }),
    );
  });

  it('refuses a length past 1 MiB before reading the body', () => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => new FrameReader().feed(head)).toThrow(FrameError);
  });
});

describe('messages', () => {
  const frame = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
  it('reads a req with its optional fields and nothing else', () => {
    expect(parseProxyMessage(frame({ t: 'req', id: 1, method: 'GET', host: 'a.example', port: 443, path: '/x', query: 'q=1', sni: 'a.example', headers: { accept: ['*/*'] } }))).toEqual({
      t: 'req',
      id: 1,
      method: 'GET',
      host: 'a.example',
      port: 443,
      path: '/x',
      query: 'q=1',
      sni: 'a.example',
      headers: { accept: ['*/*'] },
    });
    expect(parseProxyMessage(frame({ t: 'hello', proto: 1 }))).toEqual({ t: 'hello' });
  });

  it.each([
    ['not JSON', Buffer.from('{')],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
    ['an array', frame([1])],
    ['proto 2', frame({ t: 'hello', proto: 2 })],
    ['a body (never asked for)', frame({ t: 'body', id: 1, data: '' })],
    ['an unknown field', frame({ t: 'req', id: 1, method: 'GET', host: 'a', port: 1, path: '/', x: 1 })],
    ['a port of 0', frame({ t: 'req', id: 1, method: 'GET', host: 'a', port: 0, path: '/' })],
    ['an id of 0', frame({ t: 'req', id: 0, method: 'GET', host: 'a', port: 1, path: '/' })],
    ['an empty host', frame({ t: 'req', id: 1, method: 'GET', host: '', port: 1, path: '/' })],
    ['a header that is not a list', frame({ t: 'req', id: 1, method: 'GET', host: 'a', port: 1, path: '/', headers: { a: 'b' } })],
  ])('refuses %s', (_what, bytes) => {
    expect(() => parseProxyMessage(bytes)).toThrow(FrameError);
  });

  it('keeps a deny reason within srt-proxy limits: no control characters, 1 KiB, whole code points', () => {
    expect(verdictReason('a\nb\u0000c\td')).toBe('a b c\td');
    const long = verdictReason('é😀'.repeat(1000));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(1024);
    expect(long.endsWith('…')).toBe(true);
    expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(long)).toBe(false);
  });
});

describe('egress lists', () => {
  it('covers every endpoint in srt-proxy syntax, widening what it cannot express', async () => {
    const lists = egressLists((await loadPolicyFile(policyFile)).data);
    expect(lists.allowedDomains).toEqual([
      'api.example.com:80',
      'api.example.com:443',
      '*.example.net:443',
      '*.cdn.example.org:443',
      '203.0.113.9:8443',
      '198.51.100.0:5432',
      '198.51.100.1:5432',
      '198.51.100.2:5432',
      '198.51.100.3:5432',
    ]);
    expect(lists.deniedDomains).toEqual([]);
    expect(lists.widened).toEqual([
      { pattern: 'api-*.example.net', entry: '*.example.net' },
      { pattern: '**.cdn.example.org', entry: '*.cdn.example.org' },
    ]);
    expect(lists.uncovered).toEqual(['198.51.0.0/16 (ports 6432)']);
  });
});

interface Link {
  send(message: unknown): void;
  sendRaw(bytes: Buffer): void;
  next(): Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; stderr: string }>;
}

function startDecider(args: string[], overFd: boolean): Link {
  const child = spawn(process.execPath, [CLI, 'decider', '--policy', policyFile, ...args, ...(overFd ? ['--fd', '3'] : [])], {
    stdio: overFd ? ['ignore', 'ignore', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
  });
  const input = (overFd ? child.stdio[3] : child.stdout) as Duplex;
  const output = (overFd ? child.stdio[3] : child.stdin) as Duplex;
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const reader = new FrameReader();
  const frames: Array<Record<string, unknown>> = [];
  const waiting: Array<(m: Record<string, unknown>) => void> = [];
  input.on('data', (chunk: Buffer) => {
    for (const f of reader.feed(chunk)) {
      const m = JSON.parse(f.toString('utf8')) as Record<string, unknown>;
      const w = waiting.shift();
      if (w) w(m);
      else frames.push(m);
    }
  });
  input.on('error', () => undefined);
  output.on('error', () => undefined);
  return {
    send: (m) => output.write(encodeFrame(m as Record<string, unknown>)),
    sendRaw: (b) => output.write(b),
    next: () => new Promise((resolve) => (frames.length > 0 ? resolve(frames.shift()!) : waiting.push(resolve))),
    exit: new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr }))),
  };
}

describe('portcullis decider', () => {
  it.each([false, true])('answers the hello, then each request in order (over an inherited socket: %s)', async (overFd) => {
    const link = startDecider([], overFd);
    link.send({ t: 'hello', proto: 1 });
    const hello = await link.next();
    expect(hello).toMatchObject({ t: 'hello', proto: 1, deniedDomains: [] });
    expect(hello.allowedDomains).toContain('api.example.com:443');
    link.send({ t: 'req', id: 1, method: 'GET', host: 'api.example.com', port: 443, path: '/' });
    link.send({ t: 'req', id: 2, method: 'GET', host: 'api-1.example.net', port: 443, path: '/' });
    link.send({ t: 'req', id: 5, method: 'GET', host: 'other.example.net', port: 443, path: '/' });
    expect(await link.next()).toEqual({ t: 'verdict', id: 1, action: 'allow' });
    expect(await link.next()).toEqual({ t: 'verdict', id: 2, action: 'allow' });
    const deny = await link.next();
    expect(deny).toMatchObject({ t: 'verdict', id: 5, action: 'deny', status: 403 });
    expect(String(deny.reason)).toContain('other.example.net');
    link.send({ t: 'req', id: 5, method: 'GET', host: 'api.example.com', port: 443, path: '/' });
    const end = await link.exit;
    expect(end.code).toBe(1);
    expect(end.stderr).toContain('request id 5 does not follow 5');
  }, 30_000);

  it.each([
    ['a request before the hello', (l: Link) => l.send({ t: 'req', id: 1, method: 'GET', host: 'a.example', port: 1, path: '/' }), 'a request before the hello'],
    ['garbage bytes', (l: Link) => l.sendRaw(Buffer.from([0, 0, 0, 3, 0x7b, 0x7b, 0x7b])), 'not UTF-8 JSON'],
    ['an oversized frame', (l: Link) => l.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff])), 'exceeds'],
  ])('ends the link with a clear error on %s', async (_what, act, message) => {
    const link = startDecider([], false);
    act(link);
    const end = await link.exit;
    expect(end.code).toBe(1);
    expect(end.stderr).toContain('protocol violation from srt-proxy');
    expect(end.stderr).toContain(message);
  }, 30_000);

  it('refuses --audit - while stdout carries the protocol', async () => {
    const link = startDecider(['--audit', '-'], false);
    const end = await link.exit;
    expect(end.code).toBe(2);
    expect(end.stderr).toContain('--audit -');
  }, 30_000);

  it('ends the link (exit 1) at the first malformed of 2,000 random frames, never with a crash', async () => {
    const rng = fc.sample(fc.oneof(fc.json(), fc.string(), fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a).toString('latin1'))), { numRuns: 2000, seed: 7 });
    const link = startDecider([], false);
    link.send({ t: 'hello', proto: 1 });
    await link.next();
    for (const text of rng) link.sendRaw(Buffer.concat([Buffer.from([0, 0, 0, Buffer.byteLength(text) & 0xff]).subarray(0, 4), Buffer.from(text)]));
    const end = await link.exit;
    expect(end.code).toBe(1);
    expect(end.stderr).toContain('protocol violation from srt-proxy');
    expect(end.stderr).not.toMatch(/TypeError|RangeError|at .*\.js:\d+/);
  }, 30_000);
});
