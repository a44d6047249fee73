// Malformed SOCKS greetings, credentials and requests in bulk (a seeded generator: a failing run
// is replayed from its seed). The pure readers never throw on any bytes in any split, and no
// malformed handshake reads as a CONNECT; through a real proxy a sample is refused (or closed)
// with nothing forwarded: an upstream in the simulated internet that counts what reaches it sees
// exactly the well-formed control requests mixed in, and nothing else.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { startProxy, type RunningProxy } from '../src/proxy/server.js';
import {
  chooseMethod,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USERNAME_PASSWORD,
  parseCredentials,
  parseGreeting,
  parseRequest,
  SocksMessageReader,
  type MessageParse,
} from '../src/proxy/socks-messages.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { exchangeBytes } from './fixtures/proxy/harness.js';
import { prng } from './support/prng.js';

const SEED = Number(process.env.SOCKS_FUZZ_SEED ?? 0x50c45);
const PURE_SAMPLES = 50_000;
const PROXY_SAMPLES = 2_000;
const UPSTREAM_PORT = 7100;

type Random = () => number;
const int = (r: Random, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Random, items: readonly T[]): T => items[int(r, items.length)]!;
const bytes = (r: Random, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(r, 256)));

const port16 = (p: number): Buffer => Buffer.from([p >> 8, p & 255]);
const domain = (name: Buffer): Buffer => Buffer.concat([Buffer.from([3, name.length]), name]);

/** What a well-formed CONNECT would name: the counting upstream, so a parse slip would reach it. */
interface Target {
  name: string;
  v4: string;
  port: number;
}

function address(r: Random, t: Target): Buffer {
  return r() < 0.5 ? domain(Buffer.from(t.name)) : Buffer.from([1, ...t.v4.split('.').map(Number)]);
}

const GOOD_GREETING = Buffer.from([5, 1, 0]);

/** The defects, each a function of the random source and the target; every one is a refusal. */
const DEFECTS: Record<string, (r: Random, t: Target) => Buffer> = {
  'no methods': () => Buffer.from([5, 0]),
  'only unsupported methods': (r) => {
    const methods = Array.from({ length: 1 + int(r, 8) }, () => pick(r, [1, 3, 4, 0x7f, 0x80, 0xfe, 0xff, 2 + 1 + int(r, 250)])).filter((m) => m !== 0 && m !== 2);
    return Buffer.from([5, methods.length || 1, ...(methods.length ? methods : [1])]);
  },
  'greeting cut short': (r) => {
    const n = 2 + int(r, 200);
    return Buffer.concat([Buffer.from([5, n]), bytes(r, int(r, n))]);
  },
  'request version not 5': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([pick(r, [0, 4, 6, 0x45, 0xff]), 1, 0]), address(r, t), port16(t.port)]),
  'reserved byte not 0': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 1 + int(r, 255)]), address(r, t), port16(t.port)]),
  'unknown address type': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0, pick(r, [0, 2, 5, 6, 0x7f, 0xff])]), bytes(r, 4), port16(t.port)]),
  'port 0': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0]), address(r, t), port16(0)]),
  'empty name': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0, 3, 0]), port16(t.port)]),
  'name with a forbidden byte': (r, t) => {
    const name = Buffer.from(t.name);
    const bad = Buffer.from([pick(r, [0, 0x20, 0x2f, 0x5c, 0x3f, 0x23, 0x40, 0x25, 0x3a, 0x0a, 0x0d, 0x09, 0xff, 0xc3, 0x2a])]);
    const at = int(r, name.length + 1);
    return Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0]), domain(Buffer.concat([name.subarray(0, at), bad, name.subarray(at)])), port16(t.port)]);
  },
  'name of random bytes with a control byte': (r, t) => {
    const name = Buffer.concat([bytes(r, int(r, 40)), Buffer.from([int(r, 32)]), bytes(r, int(r, 40))]);
    return Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0]), domain(name), port16(t.port)]);
  },
  'BIND or UDP ASSOCIATE or an unknown command': (r, t) => Buffer.concat([GOOD_GREETING, Buffer.from([5, pick(r, [0, 2, 3, 4, 0x7f, 0xff]), 0]), address(r, t), port16(t.port)]),
  'request cut short': (r, t) => {
    const whole = Buffer.concat([Buffer.from([5, 1, 0]), address(r, t), port16(t.port)]);
    return Buffer.concat([GOOD_GREETING, whole.subarray(0, int(r, whole.length))]);
  },
  'credentials of another version': (r, t) =>
    Buffer.concat([Buffer.from([5, 1, 2]), Buffer.from([pick(r, [0, 2, 5, 0xff]), 1, 0x61, 1, 0x62]), Buffer.from([5, 1, 0]), address(r, t), port16(t.port)]),
  'credentials cut short': (r) => Buffer.concat([Buffer.from([5, 1, 2, 1, 10 + int(r, 200)]), bytes(r, int(r, 10))]),
  'SOCKS4 or 4a': (r, t) => Buffer.concat([Buffer.from([4, 1]), port16(t.port), Buffer.from(t.v4.split('.').map(Number)), Buffer.from('user\0'), r() < 0.5 ? Buffer.from(`${t.name}\0`) : Buffer.alloc(0)]),
};
const DEFECT_NAMES = Object.keys(DEFECTS);

/** A malformed handshake, then bytes that would reach the upstream if the proxy let it through. */
function malformed(r: Random, t: Target): { defect: string; bytes: Buffer } {
  const defect = pick(r, DEFECT_NAMES);
  const payload = r() < 0.7 ? Buffer.from(`PAYLOAD-${int(r, 1e9)}`) : Buffer.alloc(0);
  const head = DEFECTS[defect]!(r, t);
  // A handshake cut short must stay short: nothing may follow it.
  return { defect, bytes: defect.endsWith('cut short') ? head : Buffer.concat([head, payload]) };
}

/** Splits `buf` at random points. */
function split(r: Random, buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  while (from < buf.length) {
    const n = 1 + int(r, Math.max(1, buf.length - from));
    out.push(buf.subarray(from, from + n));
    from += n;
  }
  return out;
}

type Outcome = 'connect' | 'refused' | 'incomplete';

/** The handshake as the proxy's SOCKS path runs it, on the pure readers alone. */
function handshake(r: Random, input: Buffer): Outcome {
  let rest = input;
  const read = <T>(parse: (b: Buffer) => MessageParse<T>): { answer: MessageParse<T>; rest: Buffer } => {
    const reader = new SocksMessageReader(parse);
    let answer: MessageParse<T> = { status: 'incomplete' };
    for (const chunk of split(r, rest)) {
      answer = reader.feed(chunk);
      if (answer.status !== 'incomplete') break;
    }
    return { answer, rest: answer.status === 'ok' ? reader.received().subarray(answer.length) : Buffer.alloc(0) };
  };
  if (input[0] !== 5) return 'refused';
  const greeting = read(parseGreeting);
  if (greeting.answer.status !== 'ok') return greeting.answer.status === 'error' ? 'refused' : 'incomplete';
  const method = chooseMethod(greeting.answer.message.methods);
  if (method === METHOD_NONE_ACCEPTABLE) return 'refused';
  rest = greeting.rest;
  if (method === METHOD_USERNAME_PASSWORD) {
    const credentials = read(parseCredentials);
    if (credentials.answer.status !== 'ok') return credentials.answer.status === 'error' ? 'refused' : 'incomplete';
    rest = credentials.rest;
  }
  const request = read(parseRequest);
  if (request.answer.status !== 'ok') return request.answer.status === 'error' ? 'refused' : 'incomplete';
  return request.answer.message.command === 1 ? 'connect' : 'refused';
}

describe('SOCKS readers on malformed input (pure)', () => {
  it(`${PURE_SAMPLES} malformed handshakes in random splits: no throw, none reads as a CONNECT`, () => {
    const r = prng(SEED);
    const target: Target = { name: 'up.fuzz.test', v4: '203.0.113.77', port: UPSTREAM_PORT };
    const seen: Record<string, number> = {};
    for (let i = 0; i < PURE_SAMPLES; i++) {
      const { defect, bytes: input } = malformed(r, target);
      seen[defect] = (seen[defect] ?? 0) + 1;
      const outcome = handshake(r, input);
      if (outcome === 'connect') throw new Error(`seed ${SEED} sample ${i} (${defect}) read as a CONNECT: ${input.toString('hex')}`);
    }
    // Every defect was drawn often.
    for (const name of DEFECT_NAMES) expect(seen[name], name).toBeGreaterThan(PURE_SAMPLES / DEFECT_NAMES.length / 2);
  });

  it('any bytes at all (random, and valid messages with bytes flipped): no reader throws', () => {
    const r = prng(SEED + 1);
    const valid = [Buffer.from([5, 2, 0, 2]), Buffer.from([1, 3, 0x61, 0x62, 0x63, 2, 0x78, 0x79]), Buffer.concat([Buffer.from([5, 1, 0]), domain(Buffer.from('git.example.org')), port16(22)])];
    for (let i = 0; i < PURE_SAMPLES; i++) {
      let input: Buffer;
      if (i % 2 === 0) input = bytes(r, int(r, 300));
      else {
        input = Buffer.from(pick(r, valid));
        for (let flips = 1 + int(r, 3); flips > 0; flips--) input[int(r, input.length)] = int(r, 256);
      }
      for (const parse of [parseGreeting, parseCredentials, parseRequest] as Array<(b: Buffer) => MessageParse<unknown>>) {
        const reader = new SocksMessageReader(parse);
        for (const chunk of split(r, input)) if (reader.feed(chunk).status !== 'incomplete') break;
      }
    }
  });
});

/** An upstream that echoes and says how many connections and bytes reached it. */
function startCountingUpstream(netns: string): Promise<{ child: ChildProcess; counts(): Promise<{ connections: number; bytes: number }> }> {
  const script = `
const net = require('node:net');
let connections = 0, bytes = 0;
net.createServer((c) => { connections++; c.on('data', (d) => { bytes += d.length; c.write(d); }); c.on('error', () => {}); })
  .listen(${UPSTREAM_PORT}, '::', () => console.log('listening'));
process.stdin.on('data', () => console.log(JSON.stringify({ connections, bytes })));
process.stdin.on('end', () => process.exit(0));`;
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const next = async (): Promise<string> => {
    const deadline = Date.now() + 10_000;
    while (lines.length === 0) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('the counting upstream did not answer');
      await new Promise((res) => setTimeout(res, 10));
    }
    return lines.shift()!;
  };
  return next().then(() => ({
    child,
    async counts() {
      child.stdin!.write('?\n');
      return JSON.parse(await next()) as { connections: number; bytes: number };
    },
  }));
}


/** Whether `answer` is the proxy refusing (SOCKS4 0x5B, 0xFF, an auth failure, a failure reply, or a close), with nothing after it. */
function isRefusal(answer: Buffer): boolean {
  if (answer.length === 0) return true;
  // The listener's own timeout, when a loaded machine did not read the first bytes in time.
  if (answer.subarray(0, 13).toString('latin1') === 'HTTP/1.1 408 ') return true;
  if (answer[0] === 0) return answer.equals(Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]));
  if (answer[0] !== 5 || answer.length < 2) return false;
  if (answer[1] === 0xff) return answer.length === 2;
  let at = 2;
  if (answer[1] === 2) {
    if (answer.length === 2) return true;
    if (answer[2] !== 1) return false;
    if (answer[3] !== 0) return answer.length === 4;
    at = 4;
  }
  if (answer.length === at) return true;
  // A reply: VER REP RSV ATYP(1) 0.0.0.0:0, never REP 0.
  return answer.length === at + 10 && answer[at] === 5 && answer[at + 1] !== 0;
}

describe('SOCKS5 malformed handshakes through a real proxy', () => {
  let sim: SimulatedInternet;
  let dir: string;
  let upstream: Awaited<ReturnType<typeof startCountingUpstream>>;
  let proxy: RunningProxy;
  let sink: StreamAuditSink;
  const events: AuditEvent[] = [];

  beforeAll(async () => {
    sim = await startSimulatedInternet({ hosts: { 'up.fuzz.test': {} } });
    upstream = await startCountingUpstream(sim.netns);
    const h = sim.hosts['up.fuzz.test']!;
    dir = mkdtempSync(join(tmpdir(), 'pc-socks-fuzz-'));
    const policyFile = join(dir, 'policy.yaml');
    const ips = `["${h.v4}/32", "${h.v6}/128"]`;
    writeFileSync(
      policyFile,
      `version: 1
network_policies:
  upstream:
    endpoints:
      - { host: up.fuzz.test, port: ${UPSTREAM_PORT}, allowed_ips: ${ips} }
      - { host: "${h.v4}", port: ${UPSTREAM_PORT}, allowed_ips: ${ips} }
`,
    );
    sink = openAuditSink(undefined);
    sink.onEvent((e) => events.push(e));
    proxy = await startProxy({
      policyFile,
      listen: { host: '127.0.0.1', port: 0 },
      audit: sink,
      resolver: { host: sim.dns.address, port: sim.dns.port },
      // Handshakes cut short wait for this; long enough for a loaded machine to read every first byte.
      limits: { headerTimeoutMs: 1_000 },
    });
  }, 60_000);

  afterAll(async () => {
    upstream?.child.stdin?.end();
    upstream?.child.kill();
    await proxy?.close();
    await sink?.close();
    await sim?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`${PROXY_SAMPLES} malformed handshakes: each refused or closed; only the well-formed controls reach the upstream`, async () => {
    const r = prng(SEED + 2);
    const h = sim.hosts['up.fuzz.test']!;
    const target: Target = { name: 'up.fuzz.test', v4: h.v4!, port: UPSTREAM_PORT };
    const samples = Array.from({ length: PROXY_SAMPLES }, () => malformed(r, target));
    // Every 100th exchange is a well-formed CONNECT: it must get through, so the counter is seen to count.
    const control = (i: number): Buffer => Buffer.concat([GOOD_GREETING, Buffer.from([5, 1, 0]), domain(Buffer.from(target.name)), port16(UPSTREAM_PORT), Buffer.from(`control-${i}`)]);
    const controls: number[] = [];
    let controlBytes = 0;
    const failures: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < samples.length) {
        const i = next++;
        if (i % 100 === 0) {
          const sent = control(i);
          const expected = 4 + 10 + `control-${i}`.length;
          const { received } = await exchangeBytes(proxy.address.port, sent, 10_000, (got) => got.length >= expected);
          controls.push(i);
          controlBytes += `control-${i}`.length;
          // 05 00, then the success reply (10 bytes), then the echo.
          if (received[3] !== 0 || !received.subarray(12).equals(Buffer.from(`control-${i}`))) failures.push(`control ${i}: ${received.toString('hex')}`);
          continue;
        }
        const { defect, bytes: input } = samples[i]!;
        const { received, closed } = await exchangeBytes(proxy.address.port, input, 10_000);
        if (!closed || !isRefusal(received)) failures.push(`sample ${i} (${defect}): closed=${closed} answer=${received.toString('hex')} input=${input.toString('hex')}`);
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 32 }, worker));
    const seconds = (Date.now() - started) / 1000;
    expect(failures.slice(0, 5)).toEqual([]);
    const counts = await upstream.counts();
    expect(counts).toEqual({ connections: controls.length, bytes: controlBytes });
    // The controls' tunnels end once their clients have gone.
    for (const deadline = Date.now() + 10_000; events.filter((e) => e.kind === 'tunnel').length < controls.length && Date.now() < deadline; ) {
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(events.filter((e) => e.kind === 'tunnel').length).toBe(controls.length);
    expect(events.filter((e) => e.dialed !== undefined).length).toBe(controls.length * 2);
    console.log(`${PROXY_SAMPLES} exchanges (${controls.length} controls) in ${seconds.toFixed(1)} s`);
  }, 300_000);
});
