// The DNS proxy against a real upstream DNS server on loopback: forwarding over UDP and TCP,
// refusals with audit events, upstream failures, malformed input, and a fuzz run after which
// the proxy still answers.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from './support/prng.js';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink } from '../src/audit/sink.js';
import { startDnsProxy, type RunningDnsProxy } from '../src/dns/proxy.js';
import { loadPolicyText } from '../src/policy/load.js';
import { startDnsServer, type DnsServer } from '../src/sim/dns-server.js';
import { decodeAnswer, encodeQuery, query, tcpExchange, udpExchange } from './fixtures/dns/client.js';

const policies = loadPolicyText(
  `version: 1
network_policies:
  web:
    endpoints:
      - { host: api.example.com, port: 443 }
      - { host: "**.docs.example.org", port: 443 }
      - { host: "img-*.example.net", port: 443 }
  agent:
    binaries: [{ path: /usr/bin/git }]
    endpoints:
      - { host: git.example.com, port: 443 }
  lan:
    endpoints:
      - { allowed_ips: ["10.20.0.0/16"], port: 5432 }
`,
  'dns-proxy.yaml',
).policies;

let upstream: DnsServer;
let proxy: RunningDnsProxy;
const events: AuditEvent[] = [];
const opened: Array<{ close(): Promise<void> | void }> = [];

beforeAll(async () => {
  upstream = await startDnsServer({
    records: {
      'api.example.com': { A: ['203.0.113.7'], AAAA: ['2001:db8::7'], ttl: 300 },
      'a.b.docs.example.org': { A: ['203.0.113.8'] },
      'img-1.example.net': { A: ['203.0.113.9'] },
      'git.example.com': { A: ['203.0.113.10'] },
    },
  });
  const sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  proxy = await startDnsProxy({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: upstream.address, port: upstream.port },
    policies,
    audit: sink,
    upstreamTimeoutMs: 500,
  });
});

afterAll(async () => {
  for (const o of opened) await o.close();
  await proxy?.close();
  await upstream?.close();
});

/** A proxy with other options against the same upstream, closed after the file. */
async function another(options: Partial<Parameters<typeof startDnsProxy>[0]>): Promise<RunningDnsProxy> {
  const p = await startDnsProxy({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: upstream.address, port: upstream.port },
    policies,
    upstreamTimeoutMs: 300,
    ...options,
  });
  opened.push(p);
  return p;
}

const upstreamSaw = (name: string, type: string): boolean => upstream.queries.some((q) => q.name === name && q.type === type);

describe('forwarding covered names', () => {
  it('answers A and AAAA over UDP and TCP with the upstream answer and the client id', async () => {
    for (const transport of ['udp', 'tcp'] as const) {
      const a = await query(proxy.address.port, 'api.example.com', 'A', transport);
      expect(a).toMatchObject({ rcode: 'NOERROR', id: 4242 });
      expect(a.answers).toMatchObject([{ type: 'A', data: '203.0.113.7', ttl: 300 }]);
      const aaaa = await query(proxy.address.port, 'api.example.com', 'AAAA', transport);
      expect(aaaa.answers).toMatchObject([{ type: 'AAAA', data: '2001:db8::7' }]);
    }
    expect(upstream.queries.filter((q) => q.name === 'api.example.com').map((q) => q.transport)).toEqual(['udp', 'udp', 'tcp', 'tcp']);
  });

  it('matches names like the policy: case, trailing dot, `**` and `*` wildcards', async () => {
    expect((await query(proxy.address.port, 'API.Example.COM.', 'A')).answers).toMatchObject([{ data: '203.0.113.7' }]);
    expect((await query(proxy.address.port, 'a.b.docs.example.org', 'A')).answers).toMatchObject([{ data: '203.0.113.8' }]);
    expect((await query(proxy.address.port, 'img-1.example.net', 'A')).answers).toMatchObject([{ data: '203.0.113.9' }]);
    // Covered but unknown upstream: the upstream's NXDOMAIN comes through.
    expect((await query(proxy.address.port, 'zzz.docs.example.org', 'A')).rcode).toBe('NXDOMAIN');
    expect(upstreamSaw('zzz.docs.example.org', 'A')).toBe(true);
  });

  it('forwards names that only a policy with binaries covers', async () => {
    expect((await query(proxy.address.port, 'git.example.com', 'A')).answers).toMatchObject([{ data: '203.0.113.10' }]);
  });

  it('forwards other types (TXT) for covered names', async () => {
    const r = await query(proxy.address.port, 'api.example.com', 'TXT');
    expect(r.rcode).toBe('NOERROR');
    expect(upstreamSaw('api.example.com', 'TXT')).toBe(true);
  });

  it('audits forwarded answers with their addresses when asked to', async () => {
    const sink = openAuditSink(undefined);
    const seen: AuditEvent[] = [];
    sink.onEvent((e) => seen.push(e));
    const p = await another({ audit: sink, auditAnswers: true });
    await query(p.address.port, 'api.example.com', 'AAAA');
    expect(seen).toMatchObject([{ kind: 'dns', allow: true, decision: 'allow', policy: 'web', host: 'api.example.com', qtype: 'AAAA', rcode: 'NOERROR', addresses: ['2001:db8::7'] }]);
  });

  it('listens on IPv6 loopback too (UDP and TCP)', async () => {
    const p = await another({ listen: { host: '::1', port: 0 } });
    expect(p.address.host).toBe('::1');
    for (const transport of ['udp', 'tcp'] as const) {
      const message = encodeQuery('api.example.com', 'A');
      const reply = await new Promise<Buffer | null>((resolve) => {
        if (transport === 'tcp') return void tcpExchange(p.address.port, message, 3000, '::1').then(resolve);
        const socket = dgram.createSocket('udp6');
        const timer = setTimeout(() => (socket.close(), resolve(null)), 3000);
        socket.once('message', (m) => (clearTimeout(timer), socket.close(), resolve(m)));
        socket.send(message, p.address.port, '::1');
      });
      expect(reply, transport).not.toBeNull();
      expect(decodeAnswer(reply!).answers).toMatchObject([{ data: '203.0.113.7' }]);
    }
  });

  it('remembers which name it handed each address out for, and only those', async () => {
    await query(proxy.address.port, 'api.example.com', 'A');
    expect(proxy.handedOut('203.0.113.7')).toBe('api.example.com');
    expect(proxy.handedOut('203.0.113.250')).toBeUndefined();
  });

  it('sends the upstream only the question: EDNS options from the client are not passed on', async () => {
    const seen: Buffer[] = [];
    const sniffer = dgram.createSocket('udp4');
    sniffer.on('message', (m, r) => {
      seen.push(m);
      const reply = dnsPacket.decode(m);
      sniffer.send(dnsPacket.encode({ type: 'response', id: reply.id, flags: dnsPacket.RECURSION_DESIRED, questions: reply.questions, answers: [] }), r.port, r.address);
    });
    await new Promise<void>((resolve) => sniffer.bind(0, '127.0.0.1', () => resolve()));
    try {
      const p = await another({ upstream: { host: '127.0.0.1', port: sniffer.address().port } });
      const message = dnsPacket.encode({
        type: 'query',
        id: 9,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name: 'api.example.com' }],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 65001, data: Buffer.from('secret-data') }] } as dnsPacket.Answer],
      });
      const reply = await udpExchange(p.address.port, message);
      expect(reply).not.toBeNull();
      expect(decodeAnswer(reply!).rcode).toBe('NOERROR');
      expect(seen).toHaveLength(1);
      expect(seen[0]!.includes(Buffer.from('secret-data'))).toBe(false);
      const sent = dnsPacket.decode(seen[0]!);
      expect(sent.questions).toMatchObject([{ name: 'api.example.com', type: 'A' }]);
      expect((sent.additionals ?? []).map((a) => a.type)).toEqual(['OPT']);
    } finally {
      sniffer.close();
    }
  });
});

describe('refusing everything else', () => {
  it('refuses names no endpoint covers, with a dns audit event, and never asks upstream', async () => {
    for (const [name, type] of [
      ['evil.example.net', 'A'],
      ['c2lnbmFs.exfil.example.net', 'TXT'],
      ['example.com', 'A'],
      ['x.api.example.com', 'A'],
      ['docs.example.org', 'A'], // `**.` needs at least one label
      ['img.example.net', 'A'], // `img-*` needs the dash
    ] as const) {
      for (const transport of ['udp', 'tcp'] as const) {
        const r = await query(proxy.address.port, name, type, transport);
        expect(r.rcode, `${name} ${type} ${transport}`).toBe('REFUSED');
        expect(upstreamSaw(name, type)).toBe(false);
      }
    }
    const event = events.find((e) => e.host === 'c2lnbmfs.exfil.example.net');
    expect(event).toMatchObject({ kind: 'dns', allow: false, decision: 'deny', qtype: 'TXT', rcode: 'REFUSED', policy: null });
    expect(String(event!.reason)).toMatch(/not named by any policy endpoint/);
  });

  it('bounds the audit events of a refusal flood, counting the ones it leaves out', async () => {
    const sink = openAuditSink(undefined);
    const seen: AuditEvent[] = [];
    sink.onEvent((e) => seen.push(e));
    const p = await startDnsProxy({ listen: { host: '127.0.0.1', port: 0 }, upstream: { host: upstream.address, port: upstream.port }, policies, audit: sink });
    const total = 5000;
    let answered = 0;
    const socket = dgram.createSocket('udp4');
    socket.on('message', () => answered++);
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    try {
      for (let i = 0; i < total; i += 250) {
        const target = Math.min(total, i + 250);
        for (let j = i; j < target; j++) socket.send(encodeQuery(`q${j}.flood.example.net`, 'A', j), p.address.port, '127.0.0.1');
        for (let wait = 0; wait < 200 && answered < target; wait++) await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      socket.close();
      await p.close();
    }
    expect(answered).toBe(total);
    const refusals = seen.filter((e) => e.rcode === 'REFUSED').length;
    const suppressed = seen.reduce((sum, e) => sum + (typeof e.suppressed === 'number' ? e.suppressed : 0), 0);
    expect(refusals + suppressed).toBe(total);
    expect(suppressed).toBeGreaterThan(0);
  });

  it('refuses every name for a hostless (allowed_ips-only) endpoint: it names no host', async () => {
    expect((await query(proxy.address.port, 'db.lan.example', 'A')).rcode).toBe('REFUSED');
  });

  it('answers NXDOMAIN instead when configured', async () => {
    const p = await another({ refusal: 'nxdomain' });
    expect((await query(p.address.port, 'evil.example.net', 'A')).rcode).toBe('NXDOMAIN');
    expect((await query(p.address.port, 'api.example.com', 'A')).rcode).toBe('NOERROR');
  });

  it('follows setPolicies', async () => {
    const p = await another({});
    expect((await query(p.address.port, 'api.example.com', 'A')).rcode).toBe('NOERROR');
    p.setPolicies(loadPolicyText('version: 1\nnetwork_policies:\n  g:\n    endpoints: [{ host: git.example.com, port: 443 }]\n', 'g.yaml').policies);
    expect((await query(p.address.port, 'api.example.com', 'A')).rcode).toBe('REFUSED');
    expect((await query(p.address.port, 'git.example.com', 'A')).rcode).toBe('NOERROR');
  });
});

describe('upstream failure', () => {
  it('answers SERVFAIL when the upstream does not answer (UDP) or refuses the connection (TCP)', async () => {
    // A bound socket that never replies.
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', () => resolve()));
    // A TCP port nobody listens on: take one, then close it.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    try {
      const sink = openAuditSink(undefined);
      const seen: AuditEvent[] = [];
      sink.onEvent((e) => seen.push(e));
      const p1 = await another({ upstream: { host: '127.0.0.1', port: silent.address().port }, audit: sink });
      const r1 = await query(p1.address.port, 'api.example.com', 'A', 'udp');
      expect(r1.rcode).toBe('SERVFAIL');
      expect(seen).toMatchObject([{ kind: 'dns', rcode: 'SERVFAIL', host: 'api.example.com', policy: 'web' }]);
      const p2 = await another({ upstream: { host: '127.0.0.1', port: deadPort } });
      expect((await query(p2.address.port, 'api.example.com', 'A', 'tcp')).rcode).toBe('SERVFAIL');
      expect((await query(p2.address.port, 'api.example.com', 'A', 'udp')).rcode).toBe('SERVFAIL');
      // Refusals do not depend on the upstream.
      expect((await query(p2.address.port, 'evil.example.net', 'A', 'udp')).rcode).toBe('REFUSED');
    } finally {
      silent.close();
    }
  });
});

/** A query header + question built by hand, for malformed variants. */
function rawQuery(opts: { qd?: number; an?: number; flags?: number; body: Buffer }): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(0x1234, 0);
  header.writeUInt16BE(opts.flags ?? 0x0100, 2);
  header.writeUInt16BE(opts.qd ?? 1, 4);
  header.writeUInt16BE(opts.an ?? 0, 6);
  return Buffer.concat([header, opts.body]);
}

const QNAME = Buffer.from([3, ...Buffer.from('api'), 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0]);
const TYPE_A_IN = Buffer.from([0, 1, 0, 1]);

describe('malformed input', () => {
  const rcodeOf = async (message: Buffer, transport: 'udp' | 'tcp' = 'udp'): Promise<string | null> => {
    const reply = transport === 'udp' ? await udpExchange(proxy.address.port, message, 1000) : await tcpExchange(proxy.address.port, message, 1000);
    if (reply === null) return null;
    const decoded = dnsPacket.decode(reply);
    expect(decoded.id).toBe(0x1234);
    expect(decoded.type).toBe('response');
    return decoded.rcode ?? null;
  };

  it('answers FORMERR for anything but exactly one plain question', async () => {
    const two = rawQuery({ qd: 2, body: Buffer.concat([QNAME, TYPE_A_IN, QNAME, TYPE_A_IN]) });
    const none = rawQuery({ qd: 0, body: Buffer.alloc(0) });
    const withAnswer = rawQuery({ an: 1, body: Buffer.concat([QNAME, TYPE_A_IN]) });
    // A compression pointer to itself: a loop.
    const loop = rawQuery({ body: Buffer.concat([Buffer.from([0xc0, 12]), TYPE_A_IN]) });
    // A label running past the end.
    const truncated = rawQuery({ body: Buffer.from([40, 97, 98]) });
    const trailing = rawQuery({ body: Buffer.concat([QNAME, TYPE_A_IN, Buffer.from([1, 2, 3])]) });
    for (const message of [two, none, withAnswer, loop, truncated, trailing]) {
      expect(await rcodeOf(message, 'udp')).toBe('FORMERR');
      expect(await rcodeOf(message, 'tcp')).toBe('FORMERR');
    }
  });

  it('answers NOTIMP for another opcode, and says nothing to responses and runts', async () => {
    expect(await rcodeOf(rawQuery({ flags: 0x2800 | 0x0100, body: Buffer.concat([QNAME, TYPE_A_IN]) }))).toBe('NOTIMP');
    expect(await rcodeOf(rawQuery({ flags: 0x8100, body: Buffer.concat([QNAME, TYPE_A_IN]) }))).toBeNull();
    expect(await udpExchange(proxy.address.port, Buffer.from([1, 2, 3]), 500)).toBeNull();
  });

  it('caps TCP connections and closes idle ones', async () => {
    const open = (port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> =>
      new Promise((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port });
        socket.on('error', () => undefined);
        const closed = new Promise<void>((r) => socket.on('close', () => r()));
        socket.on('connect', () => resolve({ socket, closed }));
      });
    const capped = await another({ maxTcpConnections: 2, tcpIdleTimeoutMs: 60_000 });
    const first = await open(capped.address.port);
    const second = await open(capped.address.port);
    await new Promise((r) => setTimeout(r, 50)); // both accepted by the proxy
    const third = await open(capped.address.port);
    await third.closed; // over the cap: closed at once
    expect(first.socket.destroyed || second.socket.destroyed).toBe(false);
    first.socket.destroy();
    second.socket.destroy();
    await Promise.all([first.closed, second.closed]);
    await new Promise((r) => setTimeout(r, 50));
    expect((await query(capped.address.port, 'api.example.com', 'A', 'tcp')).rcode).toBe('NOERROR');

    const idle = await another({ tcpIdleTimeoutMs: 200 });
    const quiet = await open(idle.address.port);
    await quiet.closed; // never closes without the idle timeout: the test would time out
  });

  it('drops a TCP connection announcing an oversized frame', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: proxy.address.port });
    const closed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 3000);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
      socket.on('error', () => undefined);
    });
    socket.write(Buffer.from([0xff, 0xff, 0, 0, 0, 0]));
    expect(await closed).toBe(true);
  });
});


function fuzzCases(count: number, seed: number): Buffer[] {
  const rand = prng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const seeds = [
    encodeQuery('api.example.com', 'A'),
    encodeQuery('evil.example.net', 'TXT'),
    encodeQuery('a.b.docs.example.org', 'AAAA'),
    dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'api.example.com' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as dnsPacket.Answer] }),
  ];
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const kind = int(5);
    if (kind === 0) {
      out.push(Buffer.from(Array.from({ length: int(600) }, () => int(256))));
      continue;
    }
    const m = Buffer.from(seeds[int(seeds.length)]!);
    let bytes = [...m];
    const edits = 1 + int(6);
    for (let e = 0; e < edits; e++) {
      const at = int(bytes.length + 1);
      switch (int(6)) {
        case 0: bytes[at % bytes.length] = int(256); break; // flip a byte
        case 1: bytes = bytes.slice(0, at); break; // truncate
        case 2: bytes.splice(at, 0, ...Array.from({ length: 1 + int(20) }, () => int(256))); break; // insert
        case 3: bytes.splice(at, 2, 0xc0, int(bytes.length + 4)); break; // compression pointer, loops included
        case 4: bytes[4 + int(8)] = int(4); break; // section counts
        default: bytes[2 + int(2)] = int(256); // flags, opcode, QR
      }
    }
    out.push(Buffer.from(bytes));
  }
  return out;
}

/** Every reply the proxy sends must be a DNS response that decodes. */
function checkReply(reply: Buffer): void {
  expect(reply.length).toBeGreaterThanOrEqual(12);
  expect(reply[2]! & 0x80).toBe(0x80);
  expect(() => dnsPacket.decode(reply)).not.toThrow();
}

describe('fuzz', () => {
  it('survives thousands of random and mutated packets over UDP, and answers a good query after', async () => {
    const cases = fuzzCases(4000, 0x5eed);
    const socket = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    socket.on('message', (m) => replies.push(m));
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    try {
      for (let i = 0; i < cases.length; i += 50) {
        await Promise.all(
          cases.slice(i, i + 50).map((c) => new Promise<void>((resolve) => socket.send(c, proxy.address.port, '127.0.0.1', () => resolve()))),
        );
        await new Promise((r) => setTimeout(r, 2));
      }
      await new Promise((r) => setTimeout(r, 700)); // let upstream round trips (≤ 500 ms timeout) finish
    } finally {
      socket.close();
    }
    expect(replies.length).toBeGreaterThan(500);
    for (const reply of replies) checkReply(reply);
    const good = await query(proxy.address.port, 'api.example.com', 'A', 'udp');
    expect(good.answers).toMatchObject([{ data: '203.0.113.7' }]);
  });

  it('survives a hostile upstream sending damaged answers, and answers a good query after', async () => {
    const rand = prng(99);
    let hostile = true;
    const fake = dgram.createSocket('udp4');
    fake.on('message', (q, r) => {
      const good = dnsPacket.encode({
        type: 'response',
        id: q.readUInt16BE(0),
        flags: dnsPacket.RECURSION_DESIRED,
        questions: dnsPacket.decode(q).questions,
        answers: [
          { type: 'CNAME', name: 'api.example.com', ttl: 60, data: 'edge.example.net' },
          { type: 'A', name: 'edge.example.net', ttl: 60, data: '203.0.113.7' },
        ],
      });
      if (!hostile) return void fake.send(good, r.port, r.address);
      // Keep the header and question (so it is taken as the answer), damage the rest.
      const questionEnd = q.length - (q.readUInt16BE(10) > 0 ? 11 : 0);
      const bytes = [...good];
      for (let e = 0; e < 1 + Math.floor(rand() * 6); e++) {
        const at = questionEnd + Math.floor(rand() * Math.max(1, bytes.length - questionEnd));
        if (rand() < 0.5) bytes[at] = Math.floor(rand() * 256);
        else bytes.length = Math.max(questionEnd, at);
      }
      if (rand() < 0.3) bytes[6] = Math.floor(rand() * 256); // answer count
      if (rand() < 0.2) bytes.splice(questionEnd, 0, 0xc0, Math.floor(rand() * bytes.length)); // pointer, loops included
      fake.send(Buffer.from(bytes), r.port, r.address);
    });
    await new Promise<void>((resolve) => fake.bind(0, '127.0.0.1', () => resolve()));
    try {
      const p = await another({ upstream: { host: '127.0.0.1', port: fake.address().port } });
      let replies = 0;
      for (let i = 0; i < 600; i++) {
        const reply = await udpExchange(p.address.port, encodeQuery(i % 2 === 0 ? 'api.example.com' : 'a.b.docs.example.org', 'A', i), 1000);
        if (reply === null) continue;
        replies++;
        expect(reply.readUInt16BE(0)).toBe(i);
        expect(reply[2]! & 0x80).toBe(0x80);
      }
      expect(replies).toBeGreaterThan(500);
      hostile = false;
      const good = await query(p.address.port, 'api.example.com', 'A');
      expect(good.answers.map((a) => a.data)).toEqual(['edge.example.net', '203.0.113.7']);
      // Both names were answered with this address (some damaged answers kept the record intact).
      expect(p.handedOut('203.0.113.7')?.split(', ')).toContain('api.example.com');
    } finally {
      fake.close();
    }
  });

  it('survives random and mutated frames over TCP, and answers a good query after', async () => {
    const cases = fuzzCases(1500, 0xfeed);
    const rand = prng(7);
    let replies = 0;
    for (let i = 0; i < cases.length; i += 4) {
      await new Promise<void>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port: proxy.address.port });
        let buffered = Buffer.alloc(0);
        const timer = setTimeout(() => socket.destroy(), 1500);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.on('data', (chunk: Buffer) => {
          buffered = Buffer.concat([buffered, chunk]);
          while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
            checkReply(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
            buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
            replies++;
          }
        });
        socket.on('connect', () => {
          const frames: Buffer[] = [];
          for (const c of cases.slice(i, i + 4)) {
            const prefix = Buffer.alloc(2);
            // Mostly honest lengths; sometimes a lie (short, long, huge).
            const lie = rand();
            prefix.writeUInt16BE(lie < 0.9 ? c.length : Math.floor(rand() * 65536));
            frames.push(prefix, c);
          }
          const all = Buffer.concat(frames);
          // In random slices, as a stream would arrive.
          for (let at = 0; at < all.length; ) {
            const n = 1 + Math.floor(rand() * 200);
            socket.write(all.subarray(at, at + n));
            at += n;
          }
          socket.end();
        });
      });
    }
    expect(replies).toBeGreaterThan(100);
    const good = await query(proxy.address.port, 'api.example.com', 'A', 'tcp');
    expect(good.answers).toMatchObject([{ data: '203.0.113.7' }]);
  });
});
