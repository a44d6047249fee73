// Credentials through the proxy with real clients (curl, python requests, Node's http) to an
// echo server in a simulated internet that returns the headers, query and body it got: the
// placeholder goes in, the value comes out at the bound endpoint only; anywhere else the
// request is refused (403 credential_not_bound, audited by name) and nothing reaches the host.
// The DNS proxy refuses query names that carry a placeholder. No byte of the value appears in
// any audit event.
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { CredentialStore } from '../src/credentials/store.js';
import { startDnsProxy } from '../src/dns/proxy.js';
import { PolicyEngine } from '../src/engine/engine.js';
import { loadPolicyFile } from '../src/policy/load.js';
import { startProxy, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { query } from './fixtures/dns/client.js';
import { rawExchange, run, waitForEvent } from './fixtures/proxy/harness.js';
import { auditLines, waitFor } from './support/audit-proxy.js';
import { cli } from './support/cli.js';

const PYTHON = spawnSync('python3', ['-c', 'import os,sys;print(os.path.realpath(sys.executable))'], { encoding: 'utf8' }).stdout.trim();
const SECRET = `ghp_${Math.random().toString(36).slice(2)}Proxy0123456789`;
const ROTATED = ['rotated-value-one', 'rotated-value-two'];
const VARIABLE = 'PC_CRED_PROXY_TOKEN';

let sim: SimulatedInternet;
let dir: string;
let policyFile: string;
let rotatingFile: string;
let proxy: RunningProxy;
let sink: StreamAuditSink;
let url: string;
const events: AuditEvent[] = [];
let placeholder: string;
let rotatingPlaceholder: string;

function cidrs(host: string): string {
  const h = sim.hosts[host]!;
  return JSON.stringify([`${h.v4}/32`, `${h.v6}/128`]);
}

function policyText(): string {
  return `version: 1
credentials:
  github:
    from: env:${VARIABLE}
  rotating:
    from: file:${rotatingFile}
network_policies:
  gh:
    endpoints:
      - host: creds.sim.test
        port: 80
        protocol: rest
        access: full
        allowed_ips: ${cidrs('creds.sim.test')}
        credentials: [github, rotating]
        allow_cleartext_credentials: true
        credentials_in_body: true
    binaries:
      - path: /usr/bin/curl
      - path: ${PYTHON}
  gh-node:
    endpoints:
      - host: nodecreds.sim.test
        port: 80
        protocol: rest
        access: read-only
        allowed_ips: ${cidrs('nodecreds.sim.test')}
        credentials: [github]
        allow_cleartext_credentials: true
    binaries:
      - path: ${process.execPath}
  open:
    endpoints:
      - { host: other.sim.test, port: 80, allowed_ips: ${cidrs('other.sim.test')} }
      - { host: creds.sim.test, port: 80, allowed_ips: ${cidrs('creds.sim.test')} }
      - { host: "*.sim.test", port: 443 }
`;
}

/** What the simulated internet's servers received on /echo… so far (asked directly, not through the proxy). */
async function seen(): Promise<Array<{ host: string; path: string; headers: Record<string, string> }>> {
  const res = await fetch(`http://${sim.hosts['other.sim.test']!.v4}/seen`);
  return (await res.json()) as Array<{ host: string; path: string; headers: Record<string, string> }>;
}

function noValueIn(text: string): void {
  expect(text).not.toContain(SECRET);
  for (const value of ROTATED) expect(text).not.toContain(value);
}

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'creds.sim.test': {}, 'other.sim.test': {}, 'nodecreds.sim.test': {} } });
  dir = mkdtempSync(join(tmpdir(), 'pc-cred-proxy-'));
  rotatingFile = join(dir, 'rotating');
  writeFileSync(rotatingFile, `${ROTATED[0]}\n`, { mode: 0o600 });
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, policyText());
  process.env[VARIABLE] = SECRET;
  sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  // The engine's store holds the placeholders this proxy start made (what --placeholders writes).
  const engine = await PolicyEngine.create(await loadPolicyFile(policyFile));
  proxy = await startProxy({ policyFile, engine, listen: { host: '127.0.0.1', port: 0 }, sniListen: { host: '127.0.0.1', port: 0 }, audit: sink, resolver: { host: sim.dns.address, port: sim.dns.port } });
  url = `http://127.0.0.1:${proxy.address.port}`;
  const byVariable = new Map(engine.credentials.placeholderVariables().map((v) => [v.variable, v.placeholder]));
  placeholder = byVariable.get(VARIABLE)!;
  rotatingPlaceholder = byVariable.get('rotating')!;
}, 60_000);

afterAll(async () => {
  delete process.env[VARIABLE];
  await proxy?.close();
  await sink?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('plain HTTP with allow_cleartext_credentials', () => {
  it('curl: the placeholder in a header and the query reaches the bound endpoint as the value', async () => {
    const res = await run('curl', ['-sS', '-x', url, '-H', `Authorization: Bearer ${placeholder}`, `http://creds.sim.test/echo/curl?token=${placeholder}`]);
    const echo = JSON.parse(res.stdout) as { headers: Record<string, string>; path: string };
    expect(echo.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(echo.path).toBe(`/echo/curl?token=${SECRET}`);
    const event = await waitForEvent(events, (e) => e.kind === 'http' && e.path === `/echo/curl?token=${placeholder}`);
    expect(event).toMatchObject({ allow: true, policy: 'gh', credentials: ['github', 'rotating'], binary: '/usr/bin/curl' });
  });

  it('the same header to another allowed host: 403 credential_not_bound, audited by name, nothing reaches it', async () => {
    const res = await run('curl', ['-sS', '-x', url, '-H', `Authorization: Bearer ${placeholder}`, 'http://other.sim.test/echo/elsewhere']);
    const body = JSON.parse(res.stdout) as Record<string, unknown>;
    expect(body).toMatchObject({ error: 'credential_not_bound', host: 'other.sim.test', port: 80, binary: '/usr/bin/curl' });
    noValueIn(res.stdout);
    expect(res.stdout).not.toContain(placeholder);
    const misuse = await waitForEvent(events, (e) => e.kind === 'credential_misuse' && e.host === 'other.sim.test');
    expect(misuse).toMatchObject({ credentials: ['github'], where: 'header Authorization', binary: '/usr/bin/curl', error: 'credential_not_bound', policy: 'open' });
    expect((await seen()).some((s) => s.path === '/echo/elsewhere')).toBe(false);
  });

  it('a binary outside the binding policy (a copy of curl) is refused at the same endpoint', async () => {
    const copy = join(dir, 'curl-copy');
    copyFileSync('/usr/bin/curl', copy);
    chmodSync(copy, 0o755);
    const res = await run(copy, ['-sS', '-x', url, '-H', `Authorization: Bearer ${placeholder}`, 'http://creds.sim.test/echo/copy']);
    expect(JSON.parse(res.stdout)).toMatchObject({ error: 'credential_not_bound', binary: copy });
    expect(await waitForEvent(events, (e) => e.kind === 'credential_misuse' && e.binary === copy)).toMatchObject({ credentials: ['github'], policy: 'open' });
    expect((await seen()).some((s) => s.path === '/echo/copy')).toBe(false);
    // Without a placeholder the same copy is simply allowed (by policy open).
    const plain = await run(copy, ['-sS', '-x', url, 'http://creds.sim.test/echo/copy-plain']);
    expect(JSON.parse(plain.stdout)).toMatchObject({ path: '/echo/copy-plain' });
  });

  it('python requests: swapped at the bound endpoint, refused elsewhere', async () => {
    const script = `
import json, sys, requests
proxies = {"http": sys.argv[1]}
h = {"Authorization": "token " + sys.argv[2]}
ok = requests.get("http://creds.sim.test/echo/py", headers=h, proxies=proxies, timeout=10)
bad = requests.get("http://other.sim.test/echo/py-bad", headers=h, proxies=proxies, timeout=10)
print(json.dumps({"ok": ok.json(), "bad_status": bad.status_code, "bad": bad.json()}))`;
    const res = await run('python3', ['-c', script, url, placeholder]);
    const out = JSON.parse(res.stdout) as { ok: { headers: Record<string, string> }; bad_status: number; bad: { error: string } };
    expect(out.ok.headers.authorization).toBe(`token ${SECRET}`);
    expect(out.bad_status).toBe(403);
    expect(out.bad.error).toBe('credential_not_bound');
    expect((await seen()).some((s) => s.path === '/echo/py-bad')).toBe(false);
  });

  it("Node's http client through the proxy: swapped at its own bound endpoint", async () => {
    const echo = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.address.port, method: 'GET', path: 'http://nodecreds.sim.test/echo/node', headers: { 'x-api-key': placeholder, host: 'nodecreds.sim.test' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(echo.status).toBe(200);
    expect((JSON.parse(echo.body) as { headers: Record<string, string> }).headers['x-api-key']).toBe(SECRET);
  });

  it('bodies with credentials_in_body: swapped, Content-Length set again', async () => {
    const data = `{"token":"${placeholder}","pad":"${'x'.repeat(1000)}"}`;
    const res = await run('curl', ['-sS', '-x', url, '-H', 'Content-Type: application/json', '--data-binary', data, 'http://creds.sim.test/echo/body']);
    const echo = JSON.parse(res.stdout) as { body: string; headers: Record<string, string> };
    const expected = data.replace(placeholder, SECRET);
    expect(echo.body).toBe(expected);
    expect(echo.headers['content-length']).toBe(String(expected.length));
    // Over 256 KiB: refused clearly rather than sent with the placeholder.
    writeFileSync(join(dir, 'big'), `${placeholder}${'y'.repeat(300 * 1024)}`);
    const big = await run('curl', ['-sS', '-x', url, '--data-binary', `@${join(dir, 'big')}`, 'http://creds.sim.test/echo/big']);
    expect(JSON.parse(big.stdout)).toMatchObject({ error: 'body_too_large' });
    expect((await seen()).some((s) => s.path === '/echo/big')).toBe(false);
    // A chunked body cannot be swapped in place: refused with a reason, nothing sent.
    const chunked = await run('curl', ['-sS', '-x', url, '-H', 'Transfer-Encoding: chunked', '--data-binary', data, 'http://creds.sim.test/echo/chunked']);
    expect(JSON.parse(chunked.stdout)).toMatchObject({ error: 'length_required' });
    expect(JSON.parse(chunked.stdout).detail).toContain('Content-Length');
    expect((await seen()).some((s) => s.path === '/echo/chunked')).toBe(false);
  });

  it('a rotated file takes effect on the next request after reload', async () => {
    const ask = async (path: string): Promise<string> => {
      const res = await run('curl', ['-sS', '-x', url, '-H', `X-Token: ${rotatingPlaceholder}`, `http://creds.sim.test${path}`]);
      return (JSON.parse(res.stdout) as { headers: Record<string, string> }).headers['x-token']!;
    };
    expect(await ask('/echo/rot-1')).toBe(ROTATED[0]);
    writeFileSync(rotatingFile, `${ROTATED[1]}\n`);
    expect((await proxy.reload()).ok).toBe(true);
    expect(await ask('/echo/rot-2')).toBe(ROTATED[1]);
  });

  it('a CONNECT host carrying a placeholder is refused before any decision or lookup', async () => {
    const host = `${placeholder}.sim.test`;
    const res = await rawExchange(proxy.address.port, `CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'credential_not_bound', port: 443 });
    expect(await waitForEvent(events, (e) => e.kind === 'credential_misuse' && e.via === 'connect')).toMatchObject({ credentials: ['github'], where: 'the host name' });
    expect(sim.dns.queries.some((q) => q.name.includes('portcullis-cred-'))).toBe(false);
  });

  it('a TLS server name (SNI) carrying a placeholder: closed, audited by name, never looked up', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: proxy.sniAddress!.port, servername: `${placeholder}.sim.test`, rejectUnauthorized: false });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('close', resolve));
    expect(await waitForEvent(events, (e) => e.kind === 'credential_misuse' && e.via === 'sni')).toMatchObject({ credentials: ['github'], where: 'the TLS server name (SNI)', port: 443 });
    expect(sim.dns.queries.some((q) => q.name.includes('portcullis-cred-'))).toBe(false);
  });

  it('no byte of any value in the audit events', () => {
    expect(events.length).toBeGreaterThan(10);
    noValueIn(JSON.stringify(events));
  });
});

describe('DNS', () => {
  it('a query name carrying a placeholder is REFUSED, with credential_misuse naming the credential', async () => {
    const store = new CredentialStore((await loadPolicyFile(policyFile)).credentials);
    const dnsEvents: AuditEvent[] = [];
    const dnsSink = openAuditSink(undefined);
    dnsSink.onEvent((e) => dnsEvents.push(e));
    const dns = await startDnsProxy({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: sim.dns.address, port: sim.dns.port },
      policies: (await loadPolicyFile(policyFile)).policies,
      audit: dnsSink,
      refusal: 'nxdomain',
      credentials: store,
    });
    try {
      const ph = store.placeholderVariables()[0]!.placeholder;
      // Covered by `*.sim.test`, so only the placeholder makes it a refusal (REFUSED even in nxdomain mode).
      const answer = await query(dns.address.port, `${ph}.sim.test`, 'A');
      expect(answer.rcode).toBe('REFUSED');
      expect(dnsEvents.find((e) => e.kind === 'credential_misuse')).toMatchObject({ via: 'dns', credentials: ['github'], error: 'credential_not_bound' });
      expect(sim.dns.queries.some((q) => q.name.includes('portcullis-cred-'))).toBe(false);
      expect((await query(dns.address.port, 'creds.sim.test', 'A')).rcode).toBe('NOERROR');
      noValueIn(JSON.stringify(dnsEvents));
    } finally {
      await dns.close();
      await dnsSink.close();
    }
  });
});

describe('inspected HTTPS (the real CLI proxy, inspecting with a CA from `portcullis ca init`)', () => {
  let inspectDir: string;
  let child: ChildProcess;
  let output = '';
  let proxyUrl: string;
  let auditFile: string;
  let caFile: string;
  let inspectPlaceholder: string;

  function inspectPolicy(): string {
    return `version: 1
credentials:
  github:
    from: env:${VARIABLE}
network_policies:
  gh:
    endpoints:
      - host: creds.sim.test
        port: 443
        protocol: rest
        access: full
        allowed_ips: ${cidrs('creds.sim.test')}
        credentials: [github]
        credentials_in_body: true
    binaries:
      - path: /usr/bin/curl
  open:
    endpoints:
      - { host: other.sim.test, port: 443, allowed_ips: ${cidrs('other.sim.test')}, tls: inspect }
`;
  }

  const curl = (...args: string[]) => run('curl', ['-sS', '--cacert', caFile, '-x', proxyUrl, ...args]);
  const inspectEvents = (): AuditEvent[] => auditLines(auditFile);
  async function inspectEvent(match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
    let found: AuditEvent | undefined;
    await waitFor('an audit event', () => (found = inspectEvents().find(match)) !== undefined);
    return found!;
  }

  beforeAll(async () => {
    inspectDir = mkdtempSync(join('/var/tmp', 'pc-cred-inspect-'));
    const made = await cli('ca', 'init', '--out', join(inspectDir, 'ca'));
    if (made.code !== 0) throw new Error(`ca init: ${made.stderr}`);
    caFile = join(inspectDir, 'ca', 'ca.crt');
    writeFileSync(join(inspectDir, 'sim-ca.pem'), sim.ca.certPem);
    writeFileSync(join(inspectDir, 'policy.yaml'), inspectPolicy());
    auditFile = join(inspectDir, 'audit.jsonl');
    const placeholders = join(inspectDir, 'placeholders');
    const args = [
      'dist/cli/main.js', 'proxy', '--policy', join(inspectDir, 'policy.yaml'), '--listen', '127.0.0.1:0', '--no-watch',
      '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', auditFile, '--placeholders', placeholders,
      '--ca-cert', caFile, '--ca-key', join(inspectDir, 'ca', 'ca.key'), '--upstream-ca', join(inspectDir, 'sim-ca.pem'),
    ];
    child = spawn(process.execPath, args, { env: { ...process.env, [VARIABLE]: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => (output += c.toString('latin1')));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString('latin1')));
    await waitFor('the proxy to listen', () => /listening on 127\.0\.0\.1:\d+/.test(output) || child.exitCode !== null, 20_000);
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
    if (port === undefined) throw new Error(`the proxy did not start: ${output}`);
    proxyUrl = `http://127.0.0.1:${port}`;
    inspectPlaceholder = /^PC_CRED_PROXY_TOKEN=(.+)$/m.exec(readFileSync(placeholders, 'utf8'))![1]!;
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    }
    if (inspectDir) rmSync(inspectDir, { recursive: true, force: true });
  });

  it('curl (HTTP/1.1 and HTTP/2): the placeholder in a header and the query reaches the bound endpoint as the value', async () => {
    for (const [version, path] of [['--http1.1', '/echo/tls-h1'], ['--http2', '/echo/tls-h2']] as const) {
      const res = await curl(version, '-H', `Authorization: Bearer ${inspectPlaceholder}`, `https://creds.sim.test${path}?token=${inspectPlaceholder}`);
      const echo = JSON.parse(res.stdout) as { headers: Record<string, string>; path: string; tls: boolean };
      expect(echo).toMatchObject({ tls: true, path: `${path}?token=${SECRET}` });
      expect(echo.headers.authorization).toBe(`Bearer ${SECRET}`);
    }
    expect(await inspectEvent((e) => e.kind === 'http' && e.path === '/echo/tls-h2')).toMatchObject({ allow: true, tls: true, alpn: 'h2', status: 200, credentials: ['github'] });
  });

  it('the same header to another allowed inspected host: 403 credential_not_bound per request, nothing reaches it, the connection goes on', async () => {
    // Two requests on one HTTP/1.1 connection, and two streams of one HTTP/2 connection: the
    // first carries the placeholder and is refused; the second, without it, goes through.
    let misuses = 0;
    for (const version of ['--http1.1', '--http2']) {
      const tag = version.slice(2).replace('.', '');
      const misused = `https://other.sim.test/echo/misused-${tag}`;
      const clean = `https://other.sim.test/echo/clean-${tag}`;
      const res = await curl(version, '-w', '\n', '-H', `Authorization: Bearer ${inspectPlaceholder}`, misused, '--next', '-sS', '--cacert', caFile, '-x', proxyUrl, version, clean, '-w', '\n%{num_connects}');
      const [refusedText, cleanText, connects] = res.stdout.split('\n').filter((line) => line !== '');
      expect(JSON.parse(refusedText!)).toMatchObject({ error: 'credential_not_bound', host: 'other.sim.test', port: 443, binary: '/usr/bin/curl' });
      expect(JSON.parse(cleanText!)).toMatchObject({ path: `/echo/clean-${tag}`, tls: true });
      expect(connects).toBe('0'); // the second request reused the first one's connection
      noValueIn(res.stdout);
      expect(res.stdout).not.toContain(inspectPlaceholder);
      await waitFor('the misuse event', () => inspectEvents().filter((e) => e.kind === 'credential_misuse').length === misuses + 1);
      misuses++;
      expect(inspectEvents().filter((e) => e.kind === 'credential_misuse').at(-1)).toMatchObject({ credentials: ['github'], where: 'header authorization', error: 'credential_not_bound', binary: '/usr/bin/curl' });
      expect(inspectEvents().find((e) => e.kind === 'http' && e.path === `/echo/misused-${tag}`)).toMatchObject({ status: 403, error: 'credential_not_bound' });
      expect((await seen()).some((s) => s.path === `/echo/misused-${tag}`)).toBe(false);
      expect((await seen()).some((s) => s.path === `/echo/clean-${tag}`)).toBe(true);
    }
    expect(inspectEvents().filter((e) => e.kind === 'credential_misuse')).toHaveLength(2);
  });

  it('a body with the placeholder is swapped (credentials_in_body), with Content-Length fixed, chunked too (read whole up to 256 KiB)', async () => {
    const data = `{"token":"${inspectPlaceholder}"}`;
    for (const extra of [[], ['-H', 'Transfer-Encoding: chunked'], ['--http2']]) {
      const res = await curl(...extra, '--data-binary', data, 'https://creds.sim.test/echo/body');
      const echo = JSON.parse(res.stdout) as { headers: Record<string, string>; body: string };
      expect(echo.body).toBe(`{"token":"${SECRET}"}`);
      expect(echo.headers['content-length']).toBe(String(Buffer.byteLength(echo.body)));
    }
    const large = join(inspectDir, 'large-body');
    writeFileSync(large, 'x'.repeat(300 * 1024));
    for (const extra of [['-H', 'Transfer-Encoding: chunked'], ['--http2']]) {
      const tooLarge = await curl(...extra, '--data-binary', `@${large}`, 'https://creds.sim.test/echo/too-large');
      expect(JSON.parse(tooLarge.stdout)).toMatchObject({ error: 'body_too_large' });
    }
    expect((await seen()).some((s) => s.path === '/echo/too-large')).toBe(false);
  });

  it('no byte of the value in the audit file or the proxy\'s stdout and stderr', () => {
    expect(inspectEvents().length).toBeGreaterThan(5);
    expect(readFileSync(auditFile, 'latin1')).not.toContain(SECRET);
    expect(output).not.toContain(SECRET);
  });
});
