// A policy cannot reopen the host through an IPv6 form of its own addresses: a range that
// overlaps loopback (here ::fff0:0:0/92, which holds ::ffff:127.0.0.1) is refused at load, at
// start and on reload (the last good policy stays), and the proxy refuses the address even if
// such a policy reached its engine some other way. Every connection is to loopback.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink } from '../src/audit/sink.js';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildPolicyData } from '../src/policy/data-document.js';
import { startProxy, type ProxyOptions, type RunningProxy } from '../src/proxy/server.js';
import { cli } from './support/cli.js';

const HOLE = '::fff0:0:0/92';

let dir: string;
let goodFile: string;
let listener: net.Server;
let listenerPort: number;
let reached = 0;
const proxies: RunningProxy[] = [];

const policyText = (allowedIps: string): string =>
  `version: 1\nnetwork_policies:\n  db:\n    endpoints:\n      - allowed_ips: ["${allowedIps}"]\n        port: ${listenerPort}\n`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pc-declarable-'));
  // The host's service the policy must never open: it counts who reaches it.
  listener = net.createServer((socket) => {
    reached++;
    socket.end('reached\n');
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listenerPort = (listener.address() as net.AddressInfo).port;
  goodFile = join(dir, 'good.yaml');
  writeFileSync(goodFile, policyText('11.0.0.0/8'));
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  await new Promise<void>((resolve) => listener?.close(() => resolve()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function proxy(opts: Partial<ProxyOptions>): Promise<{ proxy: RunningProxy; events: AuditEvent[] }> {
  const sink = openAuditSink(undefined);
  const events: AuditEvent[] = [];
  sink.onEvent((e) => events.push(e));
  const p = await startProxy({ policyFile: goodFile, listen: { host: '127.0.0.1', port: 0 }, audit: sink, ...opts });
  proxies.push(p);
  return { proxy: p, events };
}

/** CONNECT through the proxy at host:port; the status line's code and the error the body names. */
function connect(proxyHost: string, proxyPort: number, target: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(proxyPort, proxyHost);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`CONNECT ${target}: no answer`));
    }, 10_000);
    socket.on('connect', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      // A tunnel (200) stays open: take what the far end sent, then close.
      if (text.startsWith('HTTP/1.1 200') && text.includes('reached')) socket.end();
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

describe('a range overlapping loopback in an IPv6 form', () => {
  it('fails `portcullis check` with file:line:col naming the range it overlaps', async () => {
    const file = join(dir, 'hole.yaml');
    writeFileSync(file, policyText(HOLE));
    const result = await cli('check', '--policy', file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}:5:23: allowed_ips entry "${HOLE}" covers loopback addresses (::ffff:7f00:0/104 = 127.0.0.0/8 in its IPv4-mapped form)`);
  });

  it('the proxy refuses to start with it', async () => {
    const file = join(dir, 'hole-start.yaml');
    writeFileSync(file, policyText(HOLE));
    await expect(proxy({ policyFile: file })).rejects.toThrow(/hole-start\.yaml:5:23: .*covers loopback addresses \(::ffff:7f00:0\/104 = /);
    expect(reached).toBe(0);
  });

  it('a running proxy refuses it on reload and keeps the last good policy', async () => {
    const file = join(dir, 'reload.yaml');
    writeFileSync(file, policyText('11.0.0.0/8'));
    const { proxy: p, events } = await proxy({ policyFile: file });
    writeFileSync(file, policyText(HOLE));
    const result = await p.reload();
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/covers loopback addresses \(::ffff:7f00:0\/104 = /);
    expect(events.find((e) => e.kind === 'reload')).toMatchObject({ ok: false, policy_file: file });
    // Still the old policy: the host's listener stays out of reach in every spelling.
    for (const target of [`[::ffff:127.0.0.1]:${listenerPort}`, `[::ffff:7f00:1]:${listenerPort}`, `127.0.0.1:${listenerPort}`]) {
      const answer = await connect('127.0.0.1', p.address.port, target);
      expect(answer.status, target).toBe(403);
    }
    expect(reached).toBe(0);
  });

  it('even a policy that never went through the loader cannot open it: the proxy refuses the address', async () => {
    const engine = await PolicyEngine.create(buildPolicyData([{
      name: 'hole',
      binaries: [],
      endpoints: [{ host: null, host_kind: 'none', ports: [listenerPort], protocol: '', enforcement: 'enforce', rules: [], deny_rules: [], allowed_ips: [HOLE] }],
    }]));
    // Listening on 127.0.0.2, so 127.0.0.1 is not one of the proxy's own addresses: the
    // never-declarable check alone must refuse it.
    const { proxy: p, events } = await proxy({ engine, listen: { host: '127.0.0.2', port: 0 } });
    for (const target of [`[::ffff:127.0.0.1]:${listenerPort}`, `[::ffff:7f00:1]:${listenerPort}`]) {
      const answer = await connect('127.0.0.2', p.address.port, target);
      expect(answer.status, target).toBe(403);
      expect(JSON.parse(answer.body), target).toMatchObject({ error: 'ssrf_denied' });
    }
    const refusal = events.find((e) => e.kind === 'connect' && e.error === 'ssrf_denied');
    expect(refusal?.decision).toBe('deny');
    expect(String(refusal?.reason)).toContain('a loopback address');
    // And the proxy's own address in its mapped spelling is refused as the proxy itself.
    const own = await connect('127.0.0.2', p.address.port, `[::ffff:127.0.0.2]:${listenerPort}`);
    expect(own.status).toBe(403);
    expect(JSON.parse(own.body).detail).toContain('an address of the proxy itself');
    expect(reached).toBe(0);
  });
});
