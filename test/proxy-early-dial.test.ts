// The fast path (src/proxy/early-dial.ts): when the policy lets a host and port through for any
// program, the proxy dials while the caller is still being identified — and the caller is still
// identified, decided on and audited. The identity source is the real resolver, slowed by
// IDENTITY_DELAY_MS, so "the dial happened before the identity was known" shows in the upstream's
// clock (a server in the simulated internet's namespace that prints when it accepts).
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { IdentityResolver } from '../src/identity/resolver.js';
import type { ConnectionTuple, ProcessIdentity, ResolveOptions } from '../src/identity/types.js';
import dnsPacket from 'dns-packet';
import { startProxy, type IdentitySource, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { echoThrough, openTunnel, rawExchange, waitForEvent } from './fixtures/proxy/harness.js';

const PORT = 7100;
const IDENTITY_DELAY_MS = 1_000;
const work = mkdtempSync(join(tmpdir(), 'pc-early-dial-'));
let sim: SimulatedInternet;
let upstream: ChildProcess;
let upstreamLog = '';
let proxy: RunningProxy;
let sink: StreamAuditSink;
const events: AuditEvent[] = [];
let resolver: IdentityResolver;
/** When each identity lookup finished (after its delay). */
const identified: number[] = [];

// Prints "accept <id> <ms>" for each connection, echoes what it reads, and "close <id> <bytes read>".
const UPSTREAM = `
const net = require('net');
let next = 0;
net.createServer((s) => {
  const id = next++;
  let bytes = 0;
  console.log('accept ' + id + ' ' + Date.now());
  s.on('data', (d) => { bytes += d.length; s.write(d); });
  s.on('error', () => {});
  s.on('close', () => console.log('close ' + id + ' ' + bytes));
}).listen(${PORT}, '::', () => console.log('ready'));
process.stdin.on('end', () => process.exit(0)).resume();`;

/** The real resolver, answering `delayMs` late. */
class SlowIdentity implements IdentitySource {
  constructor(
    private readonly real: IdentityResolver,
    private readonly delayMs = IDENTITY_DELAY_MS,
  ) {}
  async resolve(tuple: ConnectionTuple, options?: ResolveOptions): Promise<ProcessIdentity> {
    const identity = await this.real.resolve(tuple, options);
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    identified.push(Date.now());
    return identity;
  }
}

function acceptTimes(): number[] {
  return [...upstreamLog.matchAll(/^accept \d+ (\d+)$/gm)].map((m) => Number(m[1]));
}

async function until<T>(what: string, get: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'open.sim.test': {}, 'bound.sim.test': {}, 'inspect.sim.test': {} } });
  upstream = spawn('ip', ['netns', 'exec', sim.netns, process.execPath, '-e', UPSTREAM], { stdio: ['pipe', 'pipe', 'inherit'] });
  upstream.stdout!.on('data', (d: Buffer) => (upstreamLog += d.toString()));
  await until('the upstream', () => (upstreamLog.includes('ready') ? true : undefined));
  const policyFile = join(work, 'policy.yaml');
  // The simulated internet's addresses lie in documentation ranges: named, as a policy must.
  const IPS = Object.values(sim.hosts).flatMap((h) => [h.v4, h.v6].filter(Boolean).map((a) => `"${a}"`)).join(', ');
  writeFileSync(
    policyFile,
    `version: 1
network_policies:
  anyone:
    endpoints:
      - { host: open.sim.test, port: ${PORT}, allowed_ips: [${IPS}] }
      - { host: inspect.sim.test, port: ${PORT}, allowed_ips: [${IPS}] }
  this-node-only:
    endpoints:
      - { host: bound.sim.test, port: ${PORT}, allowed_ips: [${IPS}] }
    binaries:
      - path: ${process.execPath}
  this-node-inspected:
    endpoints:
      - { host: inspect.sim.test, port: ${PORT}, allowed_ips: [${IPS}], protocol: rest, access: read-only }
    binaries:
      - path: ${process.execPath}
`,
  );
  sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  resolver = new IdentityResolver({ cmdline: false });
  proxy = await startProxy({ policyFile, listen: { host: '127.0.0.1', port: 0 }, audit: sink, resolver: { host: sim.dns.address, port: sim.dns.port }, identity: new SlowIdentity(resolver) });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await sink?.close();
  resolver?.close();
  upstream?.stdin?.end();
  upstream?.kill();
  await sim?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('dialing while the caller is identified', () => {
  it('a host any program may reach: the upstream answers before the identity is known; the caller is still resolved and audited', async () => {
    const acceptsBefore = acceptTimes().length;
    const tunnel = await openTunnel(proxy.address.port, `open.sim.test:${PORT}`);
    try {
      expect(tunnel.status).toBe(200);
      expect((await echoThrough(tunnel.socket, Buffer.from('P\n'))).toString()).toBe('P\n');
    } finally {
      tunnel.socket.destroy();
    }
    const accepted = await until('the connection', () => acceptTimes()[acceptsBefore]);
    const known = identified.at(-1)!;
    // The upstream accepted while the identity lookup was still waiting out its delay.
    expect(known - accepted).toBeGreaterThan(IDENTITY_DELAY_MS / 2);
    const decision = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'open.sim.test');
    expect(decision).toMatchObject({ allow: true, policy: 'anyone', binary: process.execPath, pid: process.pid });
    expect(decision.dialed).toBe(sim.hosts['open.sim.test']!.v4);
    const tunnelEvent = await waitForEvent(events, (e) => e.kind === 'tunnel' && e.host === 'open.sim.test');
    expect(tunnelEvent).toMatchObject({ binary: process.execPath, pid: process.pid, bytes_up: 2, bytes_down: 2 });
  });

  it('a host only named programs may reach: nothing is dialed before the identity is known', async () => {
    const acceptsBefore = acceptTimes().length;
    const tunnel = await openTunnel(proxy.address.port, `bound.sim.test:${PORT}`);
    tunnel.socket.destroy();
    expect(tunnel.status).toBe(200);
    const accepted = await until('the connection', () => acceptTimes()[acceptsBefore]);
    expect(accepted).toBeGreaterThanOrEqual(identified.at(-1)! - 5);
    const decision = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'bound.sim.test');
    expect(decision).toMatchObject({ allow: true, policy: 'this-node-only', binary: process.execPath });
  });

  it("an early dial the caller's own decision does not take (it must be inspected) is closed without a byte", async () => {
    const acceptsBefore = acceptTimes().length;
    const closesBefore = [...upstreamLog.matchAll(/^close /gm)].length;
    const answer = await rawExchange(proxy.address.port, `CONNECT inspect.sim.test:${PORT} HTTP/1.1\r\nHost: inspect.sim.test:${PORT}\r\n\r\n`);
    // No CA: a tunnel the caller's policy wants inspected is refused.
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('inspection_unavailable');
    // The early dial reached the upstream, and was closed unused.
    await until('the early connection', () => acceptTimes()[acceptsBefore]);
    const closed = await until('its close', () => [...upstreamLog.matchAll(/^close \d+ (\d+)$/gm)].slice(closesBefore)[0]);
    expect(Number(closed[1])).toBe(0);
    const decision = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'inspect.sim.test');
    expect(decision).toMatchObject({ allow: false, error: 'inspection_unavailable', binary: process.execPath });
  });

  it('a lookup that fails is made once: the decision for any caller and the caller\'s own share it', async () => {
    // A DNS server that counts the questions it gets and answers none.
    const asked = new Map<string, number>();
    const silent = dgram.createSocket('udp4');
    silent.on('message', (msg) => {
      for (const q of dnsPacket.decode(msg).questions ?? []) asked.set(q.name, (asked.get(q.name) ?? 0) + 1);
    });
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    const policyFile = join(work, 'silent.yaml');
    writeFileSync(policyFile, `version: 1
network_policies:
  anyone:
    endpoints:
      - { host: open.silent.test, port: ${PORT} }
  this-node-only:
    endpoints:
      - { host: bound.silent.test, port: ${PORT} }
    binaries:
      - path: ${process.execPath}
`);
    const quiet = await startProxy({ policyFile, listen: { host: '127.0.0.1', port: 0 }, audit: openAuditSink(undefined), resolver: { host: '127.0.0.1', port: (silent.address() as { port: number }).port }, identity: new SlowIdentity(resolver, 2_000), limits: { dnsTimeoutMs: 100 } });
    try {
      for (const host of ['bound.silent.test', 'open.silent.test']) {
        const answer = await rawExchange(quiet.address.port, `CONNECT ${host}:${PORT} HTTP/1.1\r\nHost: ${host}:${PORT}\r\n\r\n`);
        expect(answer.status).toBeGreaterThanOrEqual(502);
      }
      // The same questions for the host dialed early as for the one that waited for its caller (the
    // lookup fails well before the identity arrives, 2 s late: a lookup of its own would ask again).
      expect(asked.get('open.silent.test')).toBeGreaterThan(0);
      expect(asked.get('open.silent.test')).toBe(asked.get('bound.silent.test'));
    } finally {
      await quiet.close();
      silent.close();
    }
  });
});
