// The proxy under load and abuse: a slowloris of 500 connections beside a well-behaved client,
// 1,000 concurrent tunnels relaying distinct data, the connection cap and the header timeout.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink } from '../src/audit/sink.js';
import { startProxy, type ProxyOptions, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { echoThrough, openTunnel, rawExchange, run, waitForEvent } from './fixtures/proxy/harness.js';

const ECHO_PORT = 7009;
let sim: SimulatedInternet;
let dir: string;
let policyFile: string;
const proxies: RunningProxy[] = [];

async function proxy(opts: Partial<ProxyOptions> = {}): Promise<{ proxy: RunningProxy; events: AuditEvent[] }> {
  const sink = openAuditSink(undefined);
  const events: AuditEvent[] = [];
  sink.onEvent((e) => events.push(e));
  const p = await startProxy({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    audit: sink,
    resolver: { host: sim.dns.address, port: sim.dns.port },
    ...opts,
  });
  proxies.push(p);
  return { proxy: p, events };
}

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'echo.sim.test': {} }, extraPorts: [ECHO_PORT] });
  const h = sim.hosts['echo.sim.test']!;
  dir = mkdtempSync(join(tmpdir(), 'pc-proxy-load-'));
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1\nnetwork_policies:\n  echo:\n    endpoints:\n      - { host: echo.sim.test, ports: [80, ${ECHO_PORT}], allowed_ips: ["${h.v4}/32", "${h.v6}/128"] }\n`,
  );
}, 60_000);

afterAll(async () => {
  for (const p of proxies) await p.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function openSlow(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('CONNECT echo.sim.test:');
      resolve(s);
    });
    s.on('error', reject);
  });
}

describe('abuse and load', () => {
  it('500 slowloris connections do not stop a well-behaved client; they are cut at the header timeout', async () => {
    const { proxy: p, events } = await proxy({ limits: { headerTimeoutMs: 4_000 } });
    const slow: net.Socket[] = [];
    try {
      for (let i = 0; i < 500; i++) slow.push(await openSlow(p.address.port));
      // Keep dribbling one byte at a time on every slow connection.
      for (const s of slow) s.write('7');
      const t = await openTunnel(p.address.port, `echo.sim.test:${ECHO_PORT}`);
      expect(t.status).toBe(200);
      expect((await echoThrough(t.socket, Buffer.from('served'))).toString()).toBe('served');
      t.socket.destroy();
      expect(p.stats().connections).toBeGreaterThanOrEqual(500);
      const closed = await Promise.all(
        slow.map((s) => new Promise<string>((resolve) => {
          let data = '';
          s.on('data', (c: Buffer) => (data += c.toString()));
          s.once('close', () => resolve(data));
        })),
      );
      expect(closed.every((d) => d.startsWith('HTTP/1.1 408'))).toBe(true);
      await waitForEvent(events, (e) => e.kind === 'error' && e.error === 'header_timeout');
    } finally {
      for (const s of slow) s.destroy();
    }
  });

  it('1,000 concurrent tunnels (from a separate client process) each relay their own data intact', async () => {
    const { proxy: p, events } = await proxy();
    const res = await run(process.execPath, [join(import.meta.dirname, 'fixtures/proxy/tunnel-client.mjs'), String(p.address.port), `echo.sim.test:${ECHO_PORT}`, '1000', String(16 * 1024)], process.env, 100_000);
    expect(JSON.parse(res.stdout)).toEqual({ opened: 1000, intact: 1000, statuses: { 200: 1000 } });
    const deadline = Date.now() + 20_000;
    while (events.filter((e) => e.kind === 'tunnel').length < 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const ends = events.filter((e) => e.kind === 'tunnel');
    expect(ends).toHaveLength(1000);
    expect(ends.every((e) => e.bytes_up === 16 * 1024 && e.bytes_down === 16 * 1024 && e.binary === process.execPath)).toBe(true);
  }, 120_000);

  it('refuses connections beyond --max-connections with 503 while the others keep working', async () => {
    const { proxy: p } = await proxy({ limits: { maxConnections: 3 } });
    const held = await Promise.all([0, 1, 2].map(() => openTunnel(p.address.port, `echo.sim.test:${ECHO_PORT}`)));
    const refused = await rawExchange(p.address.port, 'CONNECT echo.sim.test:7009 HTTP/1.1\r\n\r\n');
    expect(refused.status).toBe(503);
    expect((await echoThrough(held[0]!.socket, Buffer.from('ok'))).toString()).toBe('ok');
    for (const t of held) t.socket.destroy();
  });

  it('closes a tunnel left idle past the idle timeout, and says so in the audit', async () => {
    const { proxy: p, events } = await proxy({ limits: { idleTimeoutMs: 300 } });
    const t = await openTunnel(p.address.port, `echo.sim.test:${ECHO_PORT}`);
    await new Promise<void>((resolve) => t.socket.once('close', () => resolve()));
    expect(await waitForEvent(events, (e) => e.kind === 'tunnel')).toMatchObject({ closed_by: 'idle' });
  });
});
