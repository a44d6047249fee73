// The egress proxy end to end: real clients (curl, Node https with a CONNECT agent, Python
// urllib, a TLS client on the SNI listener) through the proxy to HTTPS/HTTP servers in a
// simulated internet (its own namespace, CA and DNS server). Identity is resolved from procfs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { IdentityResolver } from '../src/identity/resolver.js';
import type { ConnectionTuple } from '../src/identity/types.js';
import { startProxy, type IdentitySource, type ProxyOptions, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { echoThrough, openTunnel, rawExchange, run, waitForClose, waitForEvent } from './fixtures/proxy/harness.js';

const FIXTURES = join(import.meta.dirname, 'fixtures/proxy');
const PYTHON = spawnSync('python3', ['-c', 'import os,sys;print(os.path.realpath(sys.executable))'], { encoding: 'utf8' }).stdout.trim();
const ECHO_PORT = 7007;
// A public (non-special) address, routed into the simulated internet's namespace only.
const PUBLIC_V4 = '11.0.113.7';

let sim: SimulatedInternet;
let dir: string;
let caFile: string;
let policyFile: string;
const proxies: RunningProxy[] = [];
const sinks: StreamAuditSink[] = [];

function cidrs(host: string): string {
  const h = sim.hosts[host]!;
  return JSON.stringify([`${h.v4}/32`, `${h.v6}/128`]);
}

function mainPolicy(extra = ''): string {
  return `version: 1
network_policies:
  curl-api:
    endpoints:
      - { host: api.sim.test, ports: [443, 80], allowed_ips: ${cidrs('api.sim.test')} }
    binaries:
      - path: /usr/bin/curl
  node-api:
    endpoints:
      - { host: node.sim.test, port: 443, allowed_ips: ${cidrs('node.sim.test')} }
    binaries:
      - path: ${process.execPath}
  python-api:
    endpoints:
      - { host: py.sim.test, ports: [443, 80], allowed_ips: ${cidrs('py.sim.test')} }
    binaries:
      - path: ${PYTHON}
  open:
    endpoints:
      - { host: open.sim.test, ports: [443, 80, ${ECHO_PORT}], allowed_ips: ${cidrs('open.sim.test')} }
      - { host: keep.sim.test, ports: [${ECHO_PORT}], allowed_ips: ${cidrs('keep.sim.test')} }
  rest:
    endpoints:
      - host: rest.sim.test
        port: 80
        allowed_ips: ${cidrs('rest.sim.test')}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
  ssrf:
    endpoints:
      - { host: "*.ssrf.test", ports: [443, 80] }
      - { host: 127.0.0.1, port: 443 }
      - { host: 169.254.169.254, port: 80 }
${extra}`;
}

async function proxy(opts: Partial<ProxyOptions> = {}): Promise<{ proxy: RunningProxy; events: AuditEvent[]; url: string }> {
  const sink = openAuditSink(undefined);
  const events: AuditEvent[] = [];
  sink.onEvent((e) => events.push(e));
  sinks.push(sink);
  const p = await startProxy({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    sniListen: { host: '127.0.0.1', port: 0 },
    audit: sink,
    resolver: { host: sim.dns.address, port: sim.dns.port },
    ...opts,
  });
  proxies.push(p);
  return { proxy: p, events, url: `http://127.0.0.1:${p.address.port}` };
}

beforeAll(async () => {
  sim = await startSimulatedInternet({
    hosts: {
      'api.sim.test': {},
      'node.sim.test': {},
      'py.sim.test': {},
      'open.sim.test': {},
      'keep.sim.test': {},
      'rest.sim.test': {},
      'denied.sim.test': {},
      'public.ssrf.test': { v4: PUBLIC_V4 },
      'frame.sim.test': {},
    },
    extraPorts: [ECHO_PORT],
  });
  dir = mkdtempSync(join(tmpdir(), 'pc-proxy-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, sim.ca.certPem);
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, mainPolicy());
}, 60_000);

afterAll(async () => {
  for (const p of proxies) await p.close();
  for (const s of sinks) await s.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('CONNECT and forward HTTP with real clients', () => {
  it('curl -x: allowed HTTPS through CONNECT and HTTP in absolute form, with identity and tunnel audit', async () => {
    const { events, url } = await proxy();
    const https = await run('curl', ['-sS', '--cacert', caFile, '-x', url, 'https://api.sim.test/hello']);
    expect(https.code).toBe(0);
    expect(JSON.parse(https.stdout)).toMatchObject({ host: 'api.sim.test', path: '/hello', tls: true });
    const http = await run('curl', ['-sS', '-x', url, 'http://api.sim.test/plain?q=1']);
    expect(JSON.parse(http.stdout)).toMatchObject({ host: 'api.sim.test', path: '/plain?q=1', tls: false });

    const connect = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'api.sim.test');
    expect(connect).toMatchObject({ allow: true, decision: 'allow', policy: 'curl-api', binary: '/usr/bin/curl', port: 443 });
    expect(typeof connect.pid).toBe('number');
    expect(connect.dialed).toBe(sim.hosts['api.sim.test']!.v4);
    const tunnel = await waitForEvent(events, (e) => e.kind === 'tunnel' && e.via === 'connect' && e.host === 'api.sim.test');
    expect(tunnel.dialed).toBe(sim.hosts['api.sim.test']!.v4);
    expect(tunnel.bytes_up).toBeGreaterThan(200);
    expect(tunnel.bytes_down).toBeGreaterThan(500);
    expect(typeof tunnel.duration_ms).toBe('number');
    expect(await waitForEvent(events, (e) => e.kind === 'http' && e.path === '/plain?q=1')).toMatchObject({ decision: 'allow', method: 'GET' });
  });

  it('curl with https_proxy in the environment; denied host gets the structured 403', async () => {
    const { events, url } = await proxy();
    const env = { ...process.env, https_proxy: url, HTTPS_PROXY: url };
    const ok = await run('curl', ['-sS', '--cacert', caFile, 'https://api.sim.test/env'], env);
    expect(JSON.parse(ok.stdout)).toMatchObject({ path: '/env' });
    const denied = await run('curl', ['-sS', '--cacert', caFile, 'https://denied.sim.test/'], env);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('403');
    const event = await waitForEvent(events, (e) => e.host === 'denied.sim.test');
    expect(event).toMatchObject({ kind: 'connect', allow: false, decision: 'deny', error: 'policy_denied', binary: '/usr/bin/curl' });
    // A denied host is never looked up.
    expect(sim.dns.queries.some((q) => q.name === 'denied.sim.test')).toBe(false);
  });

  it('the deny body says what was refused, by which policy, for which binary, and that retrying will not help', async () => {
    const { url } = await proxy();
    const res = await run('curl', ['-sS', '-i', '-x', url, '--proxytunnel', '--cacert', caFile, 'https://open.sim.test:8443/']);
    expect(res.stdout).toMatch(/^HTTP\/1\.1 403/m);
    expect(res.stdout).toMatch(/X-Portcullis-Decision: deny/i);
    expect(res.stdout).toMatch(/Content-Type: application\/json/i);
    const viaHttp = await run('curl', ['-sS', '-x', url, 'http://api.sim.test:8080/x']);
    const body = JSON.parse(viaHttp.stdout);
    expect(body).toMatchObject({ error: 'policy_denied', policy: null, binary: '/usr/bin/curl', host: 'api.sim.test', port: 8080 });
    expect(body.detail).toContain('api.sim.test:8080');
    expect(body.message).toMatch(/without the proxy\) will not work/);
  });

  it('wrong binary: curl may not use the Python-only endpoint; the reason names the policy and the binary', async () => {
    const { url } = await proxy();
    const res = await run('curl', ['-sS', '-x', url, 'http://py.sim.test/']);
    const body = JSON.parse(res.stdout);
    expect(body.error).toBe('policy_denied');
    expect(body.binary).toBe('/usr/bin/curl');
    expect(body.detail).toContain('python-api');
  });

  // node-api lists the Node executable; a child of this (Node) test process also matches it
  // through its ancestors, which is the documented semantics.
  it("Node's https through a CONNECT agent (allowed as node, refused for a host it may not reach)", async () => {
    const { events, url } = await proxy();
    const ok = await run(process.execPath, [join(FIXTURES, 'node-client.mjs'), 'https://node.sim.test/agent', url, caFile]);
    expect(JSON.parse(ok.stdout)).toMatchObject({ status: 200 });
    expect(JSON.parse(JSON.parse(ok.stdout).body)).toMatchObject({ host: 'node.sim.test', path: '/agent', tls: true });
    expect(await waitForEvent(events, (e) => e.host === 'node.sim.test')).toMatchObject({ binary: process.execPath, policy: 'node-api' });
    const refused = await run(process.execPath, [join(FIXTURES, 'node-client.mjs'), 'https://api.sim.test/', url, caFile]);
    // https-proxy-agent hands the proxy's refusal to the request as its response.
    expect(JSON.parse(refused.stdout).status).toBe(403);
    expect(await waitForEvent(events, (e) => e.host === 'api.sim.test')).toMatchObject({ decision: 'deny', binary: process.execPath });
  });

  it('python3 urllib with proxy environment variables (HTTPS and HTTP)', async () => {
    const { events, url } = await proxy();
    const env = { ...process.env, https_proxy: url, http_proxy: url, no_proxy: '' };
    const https = await run('python3', [join(FIXTURES, 'python-client.py'), 'https://py.sim.test/urllib', caFile], env);
    expect(JSON.parse(https.stdout)).toMatchObject({ status: 200 });
    const http = await run('python3', [join(FIXTURES, 'python-client.py'), 'http://py.sim.test/plain', caFile], env);
    expect(JSON.parse(JSON.parse(http.stdout).body)).toMatchObject({ path: '/plain', tls: false });
    expect(await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'py.sim.test')).toMatchObject({ binary: PYTHON, policy: 'python-api' });
    const denied = await run('python3', [join(FIXTURES, 'python-client.py'), 'http://api.sim.test/', caFile], env);
    expect(JSON.parse(denied.stdout)).toMatchObject({ status: 403 });
  });

  it('absolute-form https:// gets 400 telling the client to use CONNECT; malformed heads get 400, huge ones 431', async () => {
    const { proxy: p } = await proxy();
    const https = await rawExchange(p.address.port, 'GET https://api.sim.test/ HTTP/1.1\r\nHost: api.sim.test\r\n\r\n');
    expect(https.status).toBe(400);
    expect(JSON.parse(https.body)).toMatchObject({ error: 'use_connect' });
    expect(JSON.parse(https.body).detail).toMatch(/CONNECT/);
    expect((await rawExchange(p.address.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')).status).toBe(400);
    expect((await rawExchange(p.address.port, 'CONNECT api.sim.test HTTP/1.1\r\n\r\n')).status).toBe(400);
    expect((await rawExchange(p.address.port, 'CONNECT a b:443 HTTP/1.1\r\n\r\n')).status).toBe(400);
    expect((await rawExchange(p.address.port, 'GET http://api.sim.test/ HTTP/1.1\nHost: x\n\n')).status).toBe(400);
    const big = `GET http://api.sim.test/ HTTP/1.1\r\nX-Fill: ${'a'.repeat(20_000)}\r\n\r\n`;
    expect((await rawExchange(p.address.port, big)).status).toBe(431);
    const smuggle = 'POST http://open.sim.test/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc';
    expect((await rawExchange(p.address.port, smuggle)).status).toBe(400);
  });

  it('upstream unreachable gives 502', async () => {
    const { url } = await proxy();
    // Allowed host and port, but nothing listens on port 80 of keep.sim.test's echo-only policy: use an allowed closed port.
    writeFileSync(join(dir, 'closed.yaml'), `${mainPolicy()}  closed:\n    endpoints:\n      - { host: open.sim.test, port: 9, allowed_ips: ${cidrs('open.sim.test')} }\n`);
    const { url: url2 } = await proxy({ policyFile: join(dir, 'closed.yaml') });
    expect(url2).not.toBe(url);
    const res = await run('curl', ['-sS', '-x', url2, 'http://open.sim.test:9/']);
    expect(JSON.parse(res.stdout)).toMatchObject({ error: 'upstream_unreachable' });
  });
});

describe('identity', () => {
  let outsider: ChildProcess;
  beforeAll(async () => {
    // A process in a network namespace of its own: anchoring identity there makes every
    // caller of this proxy unresolvable (its socket row is not in that namespace's table).
    outsider = spawn('unshare', ['-n', 'sleep', '60'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(() => outsider?.kill());

  it('an unresolved caller is refused where binaries are listed and allowed where none are', async () => {
    const { events, url } = await proxy({ anchorPid: outsider.pid! });
    const refused = await run('curl', ['-sS', '-x', url, 'http://api.sim.test/']);
    const body = JSON.parse(refused.stdout);
    expect(body).toMatchObject({ error: 'policy_denied', binary: '<unresolved>' });
    const event = await waitForEvent(events, (e) => e.host === 'api.sim.test');
    expect(event.unresolved_reason).toBe('no_socket_row');
    expect(event.binary).toBe('<unresolved>');
    const allowed = await run('curl', ['-sS', '-x', url, 'http://open.sim.test/any']);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ host: 'open.sim.test', path: '/any' });
    expect(await waitForEvent(events, (e) => e.host === 'open.sim.test')).toMatchObject({ allow: true, binary: '<unresolved>', unresolved_reason: 'no_socket_row' });
  });
});

describe('binary integrity', () => {
  it('a program whose executable changed since it was first seen at its path is refused', async () => {
    const { events, url } = await proxy();
    const bin = join(dir, 'curl-copy');
    copyFileSync('/usr/bin/curl', bin);
    chmodSync(bin, 0o755);
    const first = await run(bin, ['-sS', '-x', url, 'http://open.sim.test/trusted']);
    expect(JSON.parse(first.stdout)).toMatchObject({ path: '/trusted' });
    // Same path, different content (a new file renamed over it).
    writeFileSync(`${bin}.new`, Buffer.concat([readFileSync('/usr/bin/curl'), Buffer.from('changed')]));
    chmodSync(`${bin}.new`, 0o755);
    renameSync(`${bin}.new`, bin);
    const second = await run(bin, ['-sS', '-x', url, 'http://open.sim.test/changed']);
    expect(JSON.parse(second.stdout)).toMatchObject({ error: 'integrity_violation', binary: bin });
    const event = await waitForEvent(events, (e) => e.path === '/changed');
    expect(event).toMatchObject({ decision: 'deny', error: 'integrity_violation' });
    expect(String(event.integrity_violation)).toContain(bin);
  });
});

describe('L7 rules on forward HTTP', () => {
  it('allows GET /v1/**, refuses other methods, deny rules and dot-segment walks around them', async () => {
    const { events, url } = await proxy();
    const ok = await run('curl', ['-sS', '-x', url, 'http://rest.sim.test/v1/items']);
    expect(JSON.parse(ok.stdout)).toMatchObject({ path: '/v1/items' });
    const post = await run('curl', ['-sS', '-x', url, '-X', 'POST', '-d', 'x=1', 'http://rest.sim.test/v1/items']);
    expect(JSON.parse(post.stdout)).toMatchObject({ error: 'policy_denied' });
    const admin = await run('curl', ['-sS', '-x', url, 'http://rest.sim.test/v1/admin/users']);
    expect(JSON.parse(admin.stdout).error).toBe('policy_denied');
    const walk = await run('curl', ['-sS', '--path-as-is', '-x', url, 'http://rest.sim.test/v1/x/../admin/users']);
    expect(JSON.parse(walk.stdout).error).toBe('policy_denied');
    const other = await run('curl', ['-sS', '-x', url, 'http://rest.sim.test/v2/items']);
    expect(JSON.parse(other.stdout).error).toBe('policy_denied');
    expect(await waitForEvent(events, (e) => e.kind === 'http' && e.method === 'POST')).toMatchObject({ decision: 'deny', path: '/v1/items' });
  });

  it('a POST body goes upstream exactly; bytes after it are not forwarded as a second request', async () => {
    const { proxy: p } = await proxy();
    const smuggled = 'GET http://rest.sim.test/v1/admin/secret HTTP/1.1\r\nHost: rest.sim.test\r\n\r\n';
    const res = await rawExchange(
      p.address.port,
      `GET http://open.sim.test/first HTTP/1.1\r\nHost: open.sim.test\r\nContent-Length: 5\r\n\r\nhello${smuggled}`,
    );
    expect(res.status).toBe(200);
    expect(res.body).toContain('"path":"/first"');
    expect(res.body).not.toContain('/v1/admin/secret');
  });

  it('a chunked POST body is forwarded whole, and nothing after its last chunk', async () => {
    const { proxy: p } = await proxy();
    const smuggled = 'GET http://rest.sim.test/v1/admin/secret HTTP/1.1\r\nHost: rest.sim.test\r\n\r\n';
    const res = await rawExchange(
      p.address.port,
      `POST http://open.sim.test/chunked HTTP/1.1\r\nHost: open.sim.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n${smuggled}`,
    );
    expect(res.status).toBe(200);
    expect(res.body).toContain('"path":"/chunked"');
    expect(res.body).toContain('"bodyBytes":11');
    expect(res.body).not.toContain('/v1/admin/secret');
  });
});

describe('request framing', () => {
  const FRAME_PORT = 8088;
  interface Seen {
    listening?: boolean;
    request?: string;
    body?: string;
    connection?: number;
    framed?: string[];
  }

  /** The recording HTTP/1.1 upstream, started in the simulated internet on frame.sim.test. */
  async function recordingUpstream(): Promise<{ seen: Seen[]; stop(): void }> {
    const child = spawn('ip', ['netns', 'exec', sim.netns, process.execPath, join(FIXTURES, 'recording-upstream.mjs'), sim.hosts['frame.sim.test']!.v4!, String(FRAME_PORT)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const seen: Seen[] = [];
    let partial = '';
    child.stdout!.on('data', (c: Buffer) => {
      const lines = (partial + c.toString('latin1')).split('\n');
      partial = lines.pop()!;
      for (const line of lines) seen.push(JSON.parse(line) as Seen);
    });
    const stop = (): void => {
      child.stdin!.end();
      child.kill();
    };
    const deadline = Date.now() + 10_000;
    while (!seen.some((l) => l.listening) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!seen.some((l) => l.listening)) {
      stop();
      throw new Error('the recording upstream did not start');
    }
    return { seen, stop };
  }

  async function seenRequest(seen: Seen[], request: string): Promise<Seen> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = seen.find((l) => l.request === request);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`the upstream never saw ${request}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Every request the upstream's connections carried, once all of them have closed. */
  async function framedRequests(seen: Seen[]): Promise<string[]> {
    const deadline = Date.now() + 10_000;
    const opened = (): number => seen.filter((l) => l.connection !== undefined).length;
    const closed = (): Seen[] => seen.filter((l) => l.framed !== undefined);
    while (closed().length < opened() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(closed()).toHaveLength(opened());
    return closed().flatMap((l) => l.framed!);
  }

  it('a request whose Connection names Content-Length or Transfer-Encoding is refused before any decision; its body never reaches the upstream as a request', async () => {
    const file = join(dir, 'framing.yaml');
    writeFileSync(
      file,
      mainPolicy(`  framing:
    endpoints:
      - host: frame.sim.test
        port: ${FRAME_PORT}
        allowed_ips: ${cidrs('frame.sim.test')}
        protocol: rest
        rules:
          - allow: { method: POST, path: "/v1/ok" }
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
`),
    );
    const upstream = await recordingUpstream();
    try {
      const { proxy: p, events } = await proxy({ policyFile: file });
      const url = `http://frame.sim.test:${FRAME_PORT}`;
      const smuggled = `GET /v1/admin/secret HTTP/1.1\r\nHost: frame.sim.test\r\n\r\n`;
      const post = (extra: string): string => `POST ${url}/v1/ok HTTP/1.1\r\nHost: frame.sim.test\r\n${extra}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`;

      // The control: without the Connection trick those bytes arrive as the POST's body.
      expect((await rawExchange(p.address.port, post(''))).status).toBe(200);
      expect((await seenRequest(upstream.seen, 'POST /v1/ok')).body).toBe(smuggled);

      for (const named of ['content-length', 'Keep-Alive, Content-Length', 'transfer-encoding']) {
        const refused = await rawExchange(p.address.port, post(`Connection: ${named}\r\n`));
        expect(refused.status, named).toBe(400);
        const body = JSON.parse(refused.body);
        expect(body.error, named).toBe('bad_request');
        expect(body.detail, named).toMatch(/Connection must not name (content-length|transfer-encoding)/);
      }
      expect((await rawExchange(p.address.port, `GET ${url}/v1/after HTTP/1.1\r\nHost: frame.sim.test\r\n\r\n`)).status).toBe(200);
      await seenRequest(upstream.seen, 'GET /v1/after');
      // What reached the upstream, as HTTP/1.1 frames it: the control and the request after;
      // neither the refused POSTs nor, above all, the GET their bodies carried.
      expect((await framedRequests(upstream.seen)).sort()).toEqual(['GET /v1/after', 'POST /v1/ok']);
      expect(upstream.seen.some((l) => l.request === 'GET /v1/admin/secret')).toBe(false);
      // Refused before the decision: the only decisions made were the control's and the last request's.
      expect(events.filter((e) => e.kind === 'http').map((e) => `${String(e.method)} ${String(e.path)}`)).toEqual(['POST /v1/ok', 'GET /v1/after']);
    } finally {
      upstream.stop();
    }
  });
});

describe('TLS inspection without a CA', () => {
  it('a CONNECT the policy allows only inspected is refused with inspection_unavailable, saying what is missing', async () => {
    const { proxy: p, events } = await proxy();
    const refused = await openTunnel(p.address.port, 'rest.sim.test:80');
    expect(refused.status).toBe(403);
    const body = JSON.parse(refused.response.body) as { error: string; detail: string; policy: string };
    expect(body).toMatchObject({ error: 'inspection_unavailable', policy: 'rest' });
    expect(body.detail).toContain('TLS inspection needs the proxy to have a CA (--ca-cert FILE --ca-key FILE');
    const event = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'rest.sim.test');
    expect(event).toMatchObject({ allow: false, decision: 'deny', error: 'inspection_unavailable', policy: 'rest' });
    expect(event.addresses).toBeUndefined(); // refused before the host was looked up
  });

  it('a reload that makes an open tunnel need inspection closes it', async () => {
    const file = join(dir, 'reload-inspect.yaml');
    writeFileSync(file, mainPolicy());
    const { proxy: p, events } = await proxy({ policyFile: file });
    const tunnel = await openTunnel(p.address.port, `keep.sim.test:${ECHO_PORT}`);
    expect(tunnel.status).toBe(200);
    writeFileSync(file, mainPolicy().replace(`{ host: keep.sim.test, ports: [${ECHO_PORT}],`, `{ host: keep.sim.test, tls: inspect, ports: [${ECHO_PORT}],`));
    expect(await p.reload()).toMatchObject({ ok: true, closed: 1 });
    expect(await waitForClose(tunnel.socket)).toBe(true);
    const closed = await waitForEvent(events, (e) => e.kind === 'connect' && e.host === 'keep.sim.test' && e.decision === 'deny');
    expect(String(closed.reason)).toContain('but must be TLS-inspected');
  });
});

describe('report-only', () => {
  it('lets would-deny requests through and records them as audit', async () => {
    const { events, url } = await proxy({ reportOnly: true });
    const res = await run('curl', ['-sS', '--cacert', caFile, '-x', url, 'https://py.sim.test/learn']);
    expect(JSON.parse(res.stdout)).toMatchObject({ host: 'py.sim.test', path: '/learn' });
    const event = await waitForEvent(events, (e) => e.host === 'py.sim.test');
    expect(event).toMatchObject({ allow: true, decision: 'audit', binary: '/usr/bin/curl' });
    expect(String(event.reason)).toContain('would deny');
  });
});

describe('SNI listener', () => {
  function sniClient(port: number, servername: string | undefined): Promise<{ secure: boolean; body?: string; error?: string }> {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), ca: sim.ca.certPem, checkServerIdentity: () => undefined });
      let body = '';
      let secure = false;
      const timer = setTimeout(() => resolve({ secure, error: 'timeout' }), 10_000);
      socket.on('secureConnect', () => {
        secure = true;
        socket.write(`GET /sni HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
      });
      socket.on('data', (c: Buffer) => (body += c.toString()));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ secure, body });
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        resolve({ secure, error: err.message });
      });
    });
  }

  it('relays an allowed name, closes a denied one, a hello without SNI and garbage, auditing each', async () => {
    const { proxy: p, events } = await proxy();
    const port = p.sniAddress!.port;
    const ok = await sniClient(port, 'open.sim.test');
    expect(ok.body).toContain('"host":"open.sim.test"');
    expect(await waitForEvent(events, (e) => e.kind === 'sni' && e.host === 'open.sim.test')).toMatchObject({ allow: true, port: 443 });

    expect((await sniClient(port, 'denied.sim.test')).secure).toBe(false);
    expect(await waitForEvent(events, (e) => e.kind === 'sni' && e.host === 'denied.sim.test')).toMatchObject({ decision: 'deny' });

    expect((await sniClient(port, undefined)).secure).toBe(false);
    await waitForEvent(events, (e) => e.kind === 'sni' && String(e.reason).includes('without a server name'));

    const garbage = await rawExchange(port, 'GET / HTTP/1.1\r\n\r\n');
    expect(garbage.closed).toBe(true);
    expect(garbage.raw).toBe('');
    await waitForEvent(events, (e) => e.kind === 'sni' && String(e.reason).includes('malformed ClientHello'));
  });
});

describe('SSRF', () => {
  const classes: Record<string, string> = {
    loopback: '127.0.0.2',
    private10: '10.1.2.3',
    private172: '172.16.5.5',
    private192: '192.168.1.1',
    cgnat: '100.64.0.1',
    linklocal: '169.254.1.1',
    metadata: '169.254.169.254',
    multicast: '224.0.0.1',
    unspecified: '0.0.0.0',
    broadcast: '255.255.255.255',
    reserved: '240.0.0.1',
    doc1: '192.0.2.1',
    doc2: '198.51.100.1',
    doc3: '203.0.113.1',
    bench: '198.18.0.1',
    v6loopback: '::1',
    v6unspecified: '::',
    v6ula: 'fd00::1',
    v6linklocal: 'fe80::1',
    v6sitelocal: 'fec0::1',
    v6multicast: 'ff02::1',
    v6doc: '2001:db8::1',
    v6mapped: '::ffff:127.0.0.1',
    v6mappedpublic: '::ffff:11.22.33.44',
    nat64: '64:ff9b::a00:1',
    nat64local: '64:ff9b:1::1',
    sixtofour: '2002:a00:1::1',
    teredo: '2001::1',
  };

  it('refuses every special address class a name resolves to, before connecting', async () => {
    const { proxy: p, events } = await proxy();
    for (const [label, address] of Object.entries(classes)) {
      const name = `${label}.ssrf.test`;
      sim.dns.setRecords(name, address.includes(':') ? { AAAA: [address] } : { A: [address] });
      const t = await openTunnel(p.address.port, `${name}:443`);
      expect(t.status, name).toBe(403);
      expect(JSON.parse(t.response.body), name).toMatchObject({ error: 'ssrf_denied' });
      const event = await waitForEvent(events, (e) => e.host === name);
      expect(event.error, name).toBe('ssrf_denied');
      expect(event.dialed, name).toBeUndefined();
    }
    // The control: a public address (routed into the simulated internet) passes the check.
    const ok = await run('curl', ['-sS', '-x', `http://127.0.0.1:${p.address.port}`, 'http://public.ssrf.test/control']);
    expect(JSON.parse(ok.stdout)).toMatchObject({ path: '/control' });
  });

  it('normalises every IP-literal spelling before deciding and refuses the loopback and metadata addresses', async () => {
    const { proxy: p, events } = await proxy();
    const spellings = ['127.0.0.1', '2130706433', '0x7f.1', '127.1', '0177.0.0.1', '017700000001', '0x7f000001', '0x7f.0.0.1'];
    for (const spelling of spellings) {
      const t = await openTunnel(p.address.port, `${spelling}:443`);
      expect(t.status, spelling).toBe(403);
      expect(JSON.parse(t.response.body).error, spelling).toBe('ssrf_denied');
    }
    // One decision per spelling, each made on the one canonical address.
    expect(events.filter((e) => e.kind === 'connect').map((e) => e.host)).toEqual(spellings.map(() => '127.0.0.1'));
    for (const spelling of ['[::ffff:127.0.0.1]', '[::1]', '[::ffff:7f00:1]', '[0:0:0:0:0:ffff:127.0.0.1]']) {
      const t = await openTunnel(p.address.port, `${spelling}:443`);
      expect(t.status, spelling).toBe(403);
    }
    const meta = await rawExchange(p.address.port, 'GET http://0xa9fea9fe/latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(JSON.parse(meta.body)).toMatchObject({ error: 'ssrf_denied' });
    expect(await waitForEvent(events, (e) => e.kind === 'http')).toMatchObject({ host: '169.254.169.254' });
    expect((await openTunnel(p.address.port, '1.2.3.4.5:443')).status).toBe(400);
    expect((await openTunnel(p.address.port, '[fe80::1%25eth0]:443')).status).toBe(400);
  });

  it('a name with both a public and a private address is refused', async () => {
    const { proxy: p, events } = await proxy();
    sim.dns.setRecords('mixed.ssrf.test', { A: [PUBLIC_V4, '10.9.9.9'] });
    const t = await openTunnel(p.address.port, 'mixed.ssrf.test:80');
    expect(t.status).toBe(403);
    expect(JSON.parse(t.response.body).detail).toContain('10.9.9.9');
    expect((await waitForEvent(events, (e) => e.host === 'mixed.ssrf.test')).dialed).toBeUndefined();
  });

  it('DNS answers that change between lookups: one lookup per request, the checked address is the one dialed', async () => {
    const { proxy: p, events } = await proxy();
    const name = 'rebind.ssrf.test';
    sim.dns.setRecords(name, { A: [PUBLIC_V4], ttl: 0 });
    const before = sim.dns.queries.filter((q) => q.name === name).length;
    const res = await run('curl', ['-sS', '-x', `http://127.0.0.1:${p.address.port}`, `http://${name}/first`]);
    expect(JSON.parse(res.stdout)).toMatchObject({ path: '/first' });
    const queries = sim.dns.queries.filter((q) => q.name === name).slice(before);
    expect(queries.map((q) => q.type).sort()).toEqual(['A', 'AAAA']);
    expect((await waitForEvent(events, (e) => e.host === name)).dialed).toBe(PUBLIC_V4);
    sim.dns.setRecords(name, { A: ['127.0.0.1'], ttl: 0 });
    const second = await run('curl', ['-sS', '-x', `http://127.0.0.1:${p.address.port}`, `http://${name}/second`]);
    expect(JSON.parse(second.stdout)).toMatchObject({ error: 'ssrf_denied' });
  });

  it("refuses the proxy's own listen address even for an allowed name", async () => {
    const { proxy: p } = await proxy({ listen: { host: '127.0.0.1', port: 0 } });
    sim.dns.setRecords('self.ssrf.test', { A: ['127.0.0.1'] });
    const t = await openTunnel(p.address.port, `self.ssrf.test:${p.address.port}`);
    expect(t.status).toBe(403);
  });
});

describe('hot reload', () => {
  it('closes open tunnels the new policy denies, keeps the others; refuses an invalid policy and keeps the old one', async () => {
    const file = join(dir, 'reload.yaml');
    writeFileSync(file, mainPolicy());
    const { proxy: p, events } = await proxy({ policyFile: file });
    const cut = await openTunnel(p.address.port, `open.sim.test:${ECHO_PORT}`);
    const kept = await openTunnel(p.address.port, `keep.sim.test:${ECHO_PORT}`);
    expect([cut.status, kept.status]).toEqual([200, 200]);
    expect((await echoThrough(cut.socket, Buffer.from('before'))).toString()).toBe('before');

    writeFileSync(file, mainPolicy().replace(`ports: [443, 80, ${ECHO_PORT}]`, 'ports: [443, 80]'));
    const result = await p.reload();
    expect(result).toMatchObject({ ok: true, closed: 1 });
    expect(await waitForClose(cut.socket)).toBe(true);
    expect((await echoThrough(kept.socket, Buffer.from('still here'))).toString()).toBe('still here');
    expect(await waitForEvent(events, (e) => e.kind === 'tunnel' && e.closed_by === 'policy_reload')).toMatchObject({ host: 'open.sim.test' });
    expect((await openTunnel(p.address.port, `open.sim.test:${ECHO_PORT}`)).status).toBe(403);

    writeFileSync(file, 'version: 1\nnetwork_policies:\n  bad:\n    endpoints:\n      - { host: "*", port: 443 }\n');
    const refused = await p.reload();
    expect(refused.ok).toBe(false);
    expect(await waitForEvent(events, (e) => e.kind === 'reload' && e.ok === false)).toMatchObject({ policy_file: file });
    expect((await echoThrough(kept.socket, Buffer.from('old policy'))).toString()).toBe('old policy');
    const again = await openTunnel(p.address.port, `keep.sim.test:${ECHO_PORT}`);
    expect(again.status).toBe(200);
    for (const s of [kept.socket, again.socket]) s.destroy();
  });

  it('half-close: the client ends its side, the upstream still answers', async () => {
    const { proxy: p } = await proxy();
    const t = await openTunnel(p.address.port, `open.sim.test:80`);
    const chunks: Buffer[] = [];
    t.socket.on('data', (c: Buffer) => chunks.push(c));
    t.socket.end('GET /bytes/100000 HTTP/1.0\r\nHost: open.sim.test\r\n\r\n');
    expect(await waitForClose(t.socket)).toBe(true);
    const text = Buffer.concat(chunks).toString('latin1');
    expect(text.startsWith('HTTP/1.')).toBe(true);
    expect(text.slice(text.indexOf('\r\n\r\n') + 4).length).toBe(100_000);
  });
});

describe('the identity source', () => {
  it('is warmed once when the proxy listens, and told, once, when a connection it was asked about ends, with the same tuple', async () => {
    const real = new IdentityResolver();
    const asked: string[] = [];
    const released: string[] = [];
    let warmed = 0;
    const key = (t: ConnectionTuple): string => `${t.clientAddress}:${t.clientPort}>${t.proxyAddress}:${t.proxyPort}`;
    const identity: IdentitySource = {
      resolve: (tuple, options) => {
        asked.push(key(tuple));
        return real.resolve(tuple, options);
      },
      released: (tuple, options) => {
        released.push(key(tuple));
        real.released(tuple, options);
      },
      warm: async () => {
        warmed++;
        await real.warm();
      },
    };
    try {
      const { proxy: p } = await proxy({ identity });
      expect(warmed).toBe(1);
      const t = await openTunnel(p.address.port, `open.sim.test:${ECHO_PORT}`);
      expect(t.status).toBe(200);
      expect((await echoThrough(t.socket, Buffer.from('ping'))).toString()).toBe('ping');
      expect(released).toEqual([]);
      t.socket.end();
      await waitForClose(t.socket);
      for (let i = 0; i < 100 && released.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(asked).toHaveLength(1);
      // Released once, as soon as the client's end arrives (not again at close).
      expect(released).toEqual(asked);
      expect(warmed).toBe(1);
    } finally {
      real.close();
    }
  });
});

describe('portcullis proxy (CLI)', () => {
  it('serves, reloads when the file changes and on SIGHUP, and on SIGTERM flushes the audit file and exits 0', async () => {
    const file = join(dir, 'cli.yaml');
    const auditFile = join(dir, 'cli-audit.jsonl');
    writeFileSync(file, mainPolicy());
    const child = spawn(process.execPath, [
      join(import.meta.dirname, '../dist/cli/main.js'), 'proxy', '--policy', file, '--listen', '127.0.0.1:0',
      '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', auditFile,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const deadline = Date.now() + 20_000;
      while (!/listening on 127\.0\.0\.1:(\d+)/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
      const url = `http://127.0.0.1:${port}`;
      const ok = await run('curl', ['-sS', '--cacert', caFile, '-x', url, 'https://api.sim.test/cli']);
      expect(JSON.parse(ok.stdout)).toMatchObject({ path: '/cli' });

      writeFileSync(file, mainPolicy().replace('ports: [443, 80], allowed_ips', 'ports: [80], allowed_ips'));
      while (!stderr.includes('policy reloaded') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const denied = await run('curl', ['-sS', '--cacert', caFile, '-x', url, 'https://api.sim.test/cli']);
      expect(denied.stderr).toContain('403');

      writeFileSync(file, 'not: [valid');
      child.kill('SIGHUP');
      while (!stderr.includes('reload refused') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toContain('reload refused');

      const code = await new Promise<number | null>((resolve) => {
        child.once('exit', (c) => resolve(c));
        child.kill('SIGTERM');
      });
      expect(code).toBe(0);
      const lines = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
      expect(lines.some((e) => e.kind === 'connect' && e.decision === 'allow')).toBe(true);
      expect(lines.some((e) => e.kind === 'tunnel' && typeof e.bytes_down === 'number')).toBe(true);
      expect(lines.some((e) => e.kind === 'connect' && e.decision === 'deny')).toBe(true);
      expect(lines.some((e) => e.kind === 'reload' && e.ok === false)).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
