// SOCKS5 on the proxy's listen port, end to end: real clients (curl --socks5-hostname, Python's
// PySocks, a raw client for the address types) through the proxy to servers in a simulated
// internet (its own namespace, CA and DNS server), decided, audited, reloaded and limited as a
// CONNECT is; every refusal answered with its RFC 1928 reply code. Identity is resolved from procfs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { runCommand } from '../src/netns/command.js';
import { startProxy, type ProxyOptions, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { echoThrough, exchangeBytes, run, waitForClose, waitForEvent } from './fixtures/proxy/harness.js';

const PYTHON = spawnSync('python3', ['-c', 'import os,sys;print(os.path.realpath(sys.executable))'], { encoding: 'utf8' }).stdout.trim();
// PySocks, installed by .ci/run (pip install --target .cache/python PySocks).
const PY_CACHE = join(import.meta.dirname, '../.cache/python');
const ECHO_PORT = 7007;
const REFUSED_PORT = 7999; // nothing listens there
const DROPPED_PORT = 7998; // SYNs dropped in the simulated internet (nft)

let sim: SimulatedInternet;
let dir: string;
let caFile: string;
let policyFile: string;
const proxies: RunningProxy[] = [];
const sinks: StreamAuditSink[] = [];

function ips(host: string): string {
  const h = sim.hosts[host]!;
  return JSON.stringify([`${h.v4}/32`, `${h.v6}/128`]);
}

function policy(extra = ''): string {
  const open = sim.hosts['open.sim.test']!;
  return `version: 1
network_policies:
  curl-api:
    endpoints:
      - { host: api.sim.test, ports: [443, 80], allowed_ips: ${ips('api.sim.test')} }
    binaries:
      - path: /usr/bin/curl
  python-api:
    endpoints:
      - { host: py.sim.test, port: 80, allowed_ips: ${ips('py.sim.test')} }
    binaries:
      - path: ${PYTHON}
  open:
    endpoints:
      - { host: open.sim.test, ports: [${ECHO_PORT}, ${REFUSED_PORT}, ${DROPPED_PORT}], allowed_ips: ${ips('open.sim.test')} }
      - { host: "${open.v4}", port: ${ECHO_PORT}, allowed_ips: ${ips('open.sim.test')} }
      - { host: "${open.v6}", port: ${ECHO_PORT}, allowed_ips: ${ips('open.sim.test')} }
      - { host: nxdomain.sim.test, port: ${ECHO_PORT} }
${extra}  rest:
    endpoints:
      - host: rest.sim.test
        port: 80
        allowed_ips: ${ips('rest.sim.test')}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
  loopback:
    endpoints:
      - { host: 127.0.0.1, port: 443 }
`;
}

/** An endpoint of the `open` policy that the reload test takes away. */
const keepEndpoint = (): string => `      - { host: keep.sim.test, port: ${ECHO_PORT}, allowed_ips: ${ips('keep.sim.test')} }\n`;

async function proxy(opts: Partial<ProxyOptions> = {}): Promise<{ proxy: RunningProxy; events: AuditEvent[]; port: number }> {
  const sink = openAuditSink(undefined);
  const events: AuditEvent[] = [];
  sink.onEvent((e) => events.push(e));
  sinks.push(sink);
  const p = await startProxy({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    audit: sink,
    resolver: { host: sim.dns.address, port: sim.dns.port },
    ...opts,
  });
  proxies.push(p);
  return { proxy: p, events, port: p.address.port };
}

/** A SOCKS5 CONNECT request for a name, an IPv4 or an IPv6 address. */
function connectRequest(host: string, port: number, command = 1): Buffer {
  let address: Buffer;
  if (net.isIPv4(host)) address = Buffer.concat([Buffer.from([1]), Buffer.from(host.split('.').map(Number))]);
  else if (net.isIPv6(host)) address = Buffer.concat([Buffer.from([4]), ipv6Bytes(host)]);
  else address = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)]);
  return Buffer.concat([Buffer.from([5, command, 0]), address, Buffer.from([port >> 8, port & 255])]);
}

function ipv6Bytes(text: string): Buffer {
  const [head = '', tail = ''] = text.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const all = [...groups(head), ...Array(8 - groups(head).length - groups(tail).length).fill('0'), ...groups(tail)];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

interface SocksSession {
  socket: net.Socket;
  /** Everything the proxy sent before the tunnel (method selection and reply). */
  answer: Buffer;
  /** The reply code of the request (0 = succeeded), or null when the proxy closed before one. */
  reply: number | null;
}

/**
 * Greets with `methods`, sends `request` (and `credentials`, when the proxy picks 0x02), and
 * resolves once the reply to the request is in (or the proxy closed).
 */
function socks(port: number, request: Buffer, methods = [0], timeoutMs = 10_000): Promise<SocksSession> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (reply: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({ socket, answer: buf, reply });
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('SOCKS5: no answer'));
    }, timeoutMs);
    const onData = (c: Buffer): void => {
      const before = buf.length;
      buf = Buffer.concat([buf, c]);
      if (before < 2 && buf.length >= 2) {
        if (buf[1] === 0x02) socket.write(Buffer.from([1, 4, ...Buffer.from('user'), 9, ...Buffer.from('hunter2!!')]));
        if (buf[1] !== 0xff) socket.write(request);
      }
      const replyAt = buf[1] === 0x02 ? 4 : 2;
      if (buf.length < replyAt + 4) return;
      const length = buf[replyAt + 3] === 4 ? 22 : 10;
      if (buf.length < replyAt + length) return;
      const rest = buf.subarray(replyAt + length);
      buf = buf.subarray(0, replyAt + length);
      if (rest.length > 0) socket.unshift(rest);
      finish(buf[replyAt + 1]!);
    };
    socket.on('data', onData);
    socket.on('close', () => finish(null));
    socket.on('error', () => finish(null));
    socket.on('connect', () => socket.write(Buffer.from([5, methods.length, ...methods])));
  });
}


function pysocks(port: number, host: string, path: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
import sys
sys.path.insert(0, ${JSON.stringify(PY_CACHE)})
import socks
s = socks.socksocket()
s.set_proxy(socks.SOCKS5, "127.0.0.1", ${port}, rdns=True)
s.settimeout(10)
try:
    s.connect((${JSON.stringify(host)}, 80))
except socks.ProxyError as e:
    print("refused:", e)
    sys.exit(3)
s.sendall(b"GET ${path} HTTP/1.0\\r\\nHost: ${host}\\r\\n\\r\\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\\r\\n\\r\\n", 1)[1].decode())
`;
  return run('python3', ['-c', script]);
}

beforeAll(async () => {
  const hasPySocks = existsSync(join(PY_CACHE, 'socks.py'));
  if (!hasPySocks) throw new Error('PySocks is missing: pip install --target .cache/python PySocks (.ci/run does)');
  sim = await startSimulatedInternet({
    hosts: {
      'api.sim.test': {},
      'py.sim.test': {},
      'open.sim.test': {},
      'keep.sim.test': {},
      'rest.sim.test': {},
      'denied.sim.test': {},
    },
    extraPorts: [ECHO_PORT],
  });
  // Connections to DROPPED_PORT get no answer at all: the connect timeout's case.
  await runCommand('ip', ['netns', 'exec', sim.netns, 'nft', '-f', '-'], `table inet socks_test {\n chain input {\n  type filter hook input priority 0;\n  tcp dport ${DROPPED_PORT} drop\n }\n}\n`);
  dir = mkdtempSync(join(tmpdir(), 'pc-socks-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, sim.ca.certPem);
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, policy());
}, 60_000);

afterAll(async () => {
  for (const p of proxies) await p.close();
  for (const s of sinks) await s.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('SOCKS5 with real clients', () => {
  it('curl --socks5-hostname: allowed HTTP and HTTPS through the tunnel, audited as socks with the caller', async () => {
    const { events, port } = await proxy();
    const http = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://api.sim.test/over-socks?q=1']);
    expect(http.code, http.stderr).toBe(0);
    expect(JSON.parse(http.stdout)).toMatchObject({ host: 'api.sim.test', path: '/over-socks?q=1', tls: false });
    const https = await run('curl', ['-sS', '--cacert', caFile, '-x', `socks5h://127.0.0.1:${port}`, 'https://api.sim.test/tls']);
    expect(JSON.parse(https.stdout)).toMatchObject({ host: 'api.sim.test', path: '/tls', tls: true });

    const event = await waitForEvent(events, (e) => e.kind === 'socks' && e.port === 80);
    expect(event).toMatchObject({ allow: true, decision: 'allow', policy: 'curl-api', binary: '/usr/bin/curl', host: 'api.sim.test', dialed: sim.hosts['api.sim.test']!.v4 });
    expect(typeof event.pid).toBe('number');
    const tunnel = await waitForEvent(events, (e) => e.kind === 'tunnel' && e.via === 'socks' && e.port === 443);
    expect(tunnel.bytes_up).toBeGreaterThan(200);
    expect(tunnel.bytes_down).toBeGreaterThan(500);
  });

  it('curl: a denied host is a curl error, never looked up, and the audit event says why', async () => {
    const { events, port } = await proxy();
    const denied = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://denied.sim.test/']);
    expect(denied.code).toBe(97);
    expect(denied.stderr).toMatch(/SOCKS5.*\(2\)/);
    const event = await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'denied.sim.test');
    expect(event).toMatchObject({ allow: false, decision: 'deny', error: 'policy_denied', binary: '/usr/bin/curl', port: 80 });
    expect(event.reason).toContain('denied.sim.test:80');
    expect(sim.dns.queries.some((q) => q.name === 'denied.sim.test')).toBe(false);
  });

  it('curl with username and password: accepted, and the credentials appear nowhere in the audit', async () => {
    const { events, port } = await proxy();
    const res = await run('curl', ['-sS', '-x', `socks5h://alice:s3cr3t-pw@127.0.0.1:${port}`, 'http://api.sim.test/auth']);
    expect(JSON.parse(res.stdout)).toMatchObject({ path: '/auth' });
    await waitForEvent(events, (e) => e.kind === 'tunnel' && e.via === 'socks');
    expect(JSON.stringify(events)).not.toMatch(/alice|s3cr3t/);
    // The raw client offers only 0x02: the sub-negotiation is answered 01 00, then the request.
    const session = await socks(port, connectRequest('open.sim.test', ECHO_PORT), [2]);
    expect([...session.answer.subarray(0, 4)]).toEqual([5, 2, 1, 0]);
    expect(session.reply).toBe(0);
    expect((await echoThrough(session.socket, Buffer.from('ping'))).toString()).toBe('ping');
    session.socket.destroy();
  });

  it('Python PySocks: allowed for python, refused (0x02) for a host only curl may reach', async () => {
    const { events, port } = await proxy();
    const ok = await pysocks(port, 'py.sim.test', '/pysocks');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ host: 'py.sim.test', path: '/pysocks' });
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'py.sim.test')).toMatchObject({ binary: PYTHON, policy: 'python-api' });
    const refused = await pysocks(port, 'api.sim.test', '/');
    expect(refused.code).toBe(3);
    expect(refused.stdout).toMatch(/0x02|not allowed/i);
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'api.sim.test')).toMatchObject({ decision: 'deny', binary: PYTHON });
  });
});

describe('SOCKS5 address types and reply codes', () => {
  it('IPv4 and IPv6 address types reach the address itself; the reply names the bound address', async () => {
    const { events, port } = await proxy();
    const open = sim.hosts['open.sim.test']!;
    for (const address of [open.v4!, open.v6!]) {
      const session = await socks(port, connectRequest(address, ECHO_PORT));
      expect(session.reply, address).toBe(0);
      // The bound address is of the dialed family.
      expect(session.answer[5]).toBe(net.isIPv4(address) ? 1 : 4);
      expect((await echoThrough(session.socket, Buffer.from(`hello ${address}`))).toString()).toBe(`hello ${address}`);
      session.socket.destroy();
      expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.host === address)).toMatchObject({ decision: 'allow', dialed: address });
    }
  });

  it('bytes sent with the request wait for the decision, then go first', async () => {
    const { port } = await proxy();
    const early = Buffer.from('sent-before-the-reply');
    const { received } = await exchangeBytes(port, Buffer.concat([Buffer.from([5, 1, 0]), connectRequest('open.sim.test', ECHO_PORT), early]), 2_000);
    expect(received.subarray(0, 4).equals(Buffer.from([5, 0, 5, 0]))).toBe(true);
    expect(received.subarray(12).toString()).toBe(early.toString());
  });

  it('0x04 for a name that does not resolve, 0x05 for a refused port, 0x06 for a connect timeout', async () => {
    const { events, port } = await proxy({ limits: { connectTimeoutMs: 400 } });
    expect((await socks(port, connectRequest('nxdomain.sim.test', ECHO_PORT))).reply).toBe(0x04);
    expect(await waitForEvent(events, (e) => e.host === 'nxdomain.sim.test')).toMatchObject({ kind: 'socks', error: 'dns_failed' });
    expect((await socks(port, connectRequest('open.sim.test', REFUSED_PORT))).reply).toBe(0x05);
    expect(await waitForEvent(events, (e) => e.port === REFUSED_PORT)).toMatchObject({ kind: 'socks', error: 'upstream_unreachable' });
    const started = Date.now();
    expect((await socks(port, connectRequest('open.sim.test', DROPPED_PORT))).reply).toBe(0x06);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(await waitForEvent(events, (e) => e.port === DROPPED_PORT)).toMatchObject({ kind: 'socks', error: 'upstream_timeout' });
  });

  it('0x02 for the SSRF check (the reason is audited) and for an L7 endpoint, which SOCKS cannot inspect', async () => {
    const { events, port } = await proxy();
    expect((await socks(port, connectRequest('127.0.0.1', 443))).reply).toBe(0x02);
    const ssrf = await waitForEvent(events, (e) => e.kind === 'socks' && e.host === '127.0.0.1');
    expect(ssrf).toMatchObject({ error: 'ssrf_denied', decision: 'deny' });
    expect(ssrf.reason).toMatch(/^ssrf: /);
    // A name that spells a loopback address is that address.
    expect((await socks(port, connectRequest('0x7f.1', 443))).reply).toBe(0x02);
    expect((await socks(port, connectRequest('rest.sim.test', 80))).reply).toBe(0x02);
    const rest = await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'rest.sim.test');
    expect(rest).toMatchObject({ decision: 'deny', error: 'inspection_unavailable' });
    expect(rest.reason).toMatch(/inspect/);
  });

  it('BIND and UDP ASSOCIATE: 0x07; only unsupported methods: 0xFF; SOCKS4 and 4a: 0x5B; all audited', async () => {
    const { events, port } = await proxy();
    expect((await socks(port, connectRequest('open.sim.test', ECHO_PORT, 2))).reply).toBe(0x07);
    expect((await socks(port, connectRequest('open.sim.test', ECHO_PORT, 3))).reply).toBe(0x07);
    const bind = await waitForEvent(events, (e) => e.kind === 'socks' && e.error === 'not_implemented');
    expect(bind).toMatchObject({ decision: 'deny', host: 'open.sim.test', port: ECHO_PORT });
    expect(bind.reason).toMatch(/BIND|UDP ASSOCIATE/);

    const gssapiOnly = await exchangeBytes(port, Buffer.from([5, 2, 1, 0x80]));
    expect([...gssapiOnly.received]).toEqual([5, 0xff]);
    expect(gssapiOnly.closed).toBe(true);

    const socks4a = Buffer.concat([Buffer.from([4, 1, 0, 80, 0, 0, 0, 1]), Buffer.from('user\0open.sim.test\0')]);
    const answer = await exchangeBytes(port, socks4a);
    expect([...answer.received]).toEqual([0, 0x5b, 0, 0, 0, 0, 0, 0]);
    expect(answer.closed).toBe(true);
    const event = await waitForEvent(events, (e) => e.kind === 'socks' && typeof e.reason === 'string' && e.reason.startsWith('SOCKS4'));
    expect(event).toMatchObject({ error: 'bad_request', decision: 'deny' });
    expect(typeof event.pid).toBe('number');
    const curl4 = await run('curl', ['-sS', '-x', `socks4a://127.0.0.1:${port}`, 'http://api.sim.test/']);
    expect(curl4.code).toBe(97);
    expect(curl4.stderr).toMatch(/91|rejected/);
  });
});

describe('SOCKS5 report-only, reload and limits', () => {
  it('report-only lets a would-deny through as audit (the SSRF check still applies)', async () => {
    const { events, port } = await proxy({ reportOnly: true });
    // py.sim.test is python's: curl would be denied.
    const res = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://py.sim.test/ro']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ host: 'py.sim.test', path: '/ro' });
    const event = await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'py.sim.test');
    expect(event).toMatchObject({ allow: true, decision: 'audit', binary: '/usr/bin/curl' });
    expect(event.reason).toMatch(/^report-only, would deny/);
    // No endpoint names denied.sim.test's documentation address: refused as SSRF, report-only or not.
    const ssrf = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://denied.sim.test/']);
    expect(ssrf.code).toBe(97);
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'denied.sim.test')).toMatchObject({ error: 'ssrf_denied' });
  });

  it('a reload cuts an open SOCKS tunnel the new policy denies and keeps the others', async () => {
    const file = join(dir, 'reload.yaml');
    writeFileSync(file, policy(keepEndpoint()));
    const { proxy: p, events, port } = await proxy({ policyFile: file });
    const kept = await socks(port, connectRequest('open.sim.test', ECHO_PORT));
    const cut = await socks(port, connectRequest('keep.sim.test', ECHO_PORT));
    expect([kept.reply, cut.reply]).toEqual([0, 0]);
    expect((await echoThrough(cut.socket, Buffer.from('before'))).toString()).toBe('before');
    writeFileSync(file, policy());
    expect(await p.reload()).toMatchObject({ ok: true, closed: 1 });
    expect(await waitForClose(cut.socket)).toBe(true);
    expect(await waitForEvent(events, (e) => e.kind === 'tunnel' && e.via === 'socks' && e.host === 'keep.sim.test')).toMatchObject({ closed_by: 'policy_reload' });
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'keep.sim.test' && e.decision === 'deny')).toMatchObject({ detail: expect.stringContaining('reloaded policy') });
    expect((await echoThrough(kept.socket, Buffer.from('after'))).toString()).toBe('after');
    kept.socket.destroy();
  });

  it('a handshake that stalls is closed at the header timeout; an idle tunnel at the idle timeout', async () => {
    const { events, port } = await proxy({ limits: { headerTimeoutMs: 300, idleTimeoutMs: 400 } });
    const started = Date.now();
    // The greeting, and half a request.
    const stalled = await exchangeBytes(port, Buffer.concat([Buffer.from([5, 1, 0]), connectRequest('open.sim.test', ECHO_PORT).subarray(0, 6)]), 5_000);
    expect(stalled.closed).toBe(true);
    expect([...stalled.received]).toEqual([5, 0]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && e.error === 'header_timeout')).toMatchObject({ decision: 'deny' });

    const idle = await socks(port, connectRequest('open.sim.test', ECHO_PORT));
    expect(idle.reply).toBe(0);
    expect(await waitForClose(idle.socket, 5_000)).toBe(true);
    expect(await waitForEvent(events, (e) => e.kind === 'tunnel' && e.via === 'socks')).toMatchObject({ closed_by: 'idle' });
  });
});
