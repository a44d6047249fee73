// The upstream (corporate) proxy end to end, with real upstream proxies: a squid of the test's
// own (loopback port, own config, pid, logs; basic auth through basic_ncsa_auth and an htpasswd
// made here; CONNECT and plain HTTP allowed only to the simulated internet's address and ports
// used) and a tinyproxy (own config, foreground, filter on one address). Clients are curl and
// raw sockets through `portcullis proxy` (CLI, so its audit file and stderr can be searched for
// the password) and through in-process proxies; one `portcullis run` goes through squid too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { startProxy, type ProxyOptions, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { rawExchange, run, waitForEvent } from './fixtures/proxy/harness.js';
import { freePort } from './support/ports.js';

const CLI = join(import.meta.dirname, '../dist/cli/main.js');
const ECHO_PORT = 7007;
const USER = 'alice';
// Unique enough to be searched for: no file or log has it by chance.
const PASSWORD = `pw-${randomBytes(9).toString('hex')}-Zq`;
const WRONG_PASSWORD = `wrong-${randomBytes(9).toString('hex')}`;
const SECRETS = [PASSWORD, WRONG_PASSWORD, b64(`${USER}:${PASSWORD}`), b64(`${USER}:${WRONG_PASSWORD}`)];

let sim: SimulatedInternet;
let work: string;
let caFile: string;
let policyFile: string;
let squid: Upstream;
let tinyproxy: Upstream;
let viaSquid: CliProxy;
let wrongPassword: CliProxy;
const children: ChildProcess[] = [];
const proxies: RunningProxy[] = [];
const sinks: StreamAuditSink[] = [];

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

const v4 = (host: string): string => sim.hosts[host]!.v4!;
const cidrs = (host: string): string => JSON.stringify([`${sim.hosts[host]!.v4}/32`, `${sim.hosts[host]!.v6}/128`]);

interface Upstream {
  port: number;
  log: string;
  /** The upstream proxy's log so far. */
  read(): string;
}


async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startChild(cmd: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  return { child, output: () => output };
}

/** squid on loopback: basic auth required; CONNECT and GET only to up.sim.test's address, ports 443 and 80. */
async function startSquid(): Promise<Upstream> {
  const dir = join(work, 'squid');
  mkdirSync(dir);
  // squid drops to its own user: its files live in a directory that user owns.
  const [uid, gid] = ['-u', '-g'].map((flag) => Number(spawnSync('id', [flag, 'proxy'], { encoding: 'utf8' }).stdout.trim()));
  const hash = spawnSync('openssl', ['passwd', '-apr1', PASSWORD], { encoding: 'utf8' }).stdout.trim();
  writeFileSync(join(dir, 'htpasswd'), `${USER}:${hash}\n`, { mode: 0o644 });
  // Its own hosts file: squid never asks a real DNS server (and 127.0.0.1:53 answers nothing here).
  writeFileSync(join(dir, 'hosts'), `${v4('up.sim.test')} up.sim.test\n`, { mode: 0o644 });
  const port = await freePort();
  const log = join(dir, 'access.log');
  writeFileSync(
    join(dir, 'squid.conf'),
    `http_port 127.0.0.1:${port}
auth_param basic program /usr/lib/squid/basic_ncsa_auth ${join(dir, 'htpasswd')}
auth_param basic realm portcullis-test
acl sim_dst dst ${v4('up.sim.test')}/32
acl sim_ports port 443 80
acl authenticated proxy_auth REQUIRED
http_access deny !sim_dst
http_access deny !sim_ports
http_access allow authenticated
http_access deny all
hosts_file ${join(dir, 'hosts')}
dns_nameservers 127.0.0.1
pid_filename ${join(dir, 'squid.pid')}
cache_log ${join(dir, 'cache.log')}
access_log stdio:${log}
cache deny all
cache_mem 8 MB
coredump_dir ${dir}
shutdown_lifetime 0 seconds
strip_query_terms off
`,
  );
  chownSync(dir, uid!, gid!);
  const { child } = startChild('/usr/sbin/squid', ['-N', '-f', join(dir, 'squid.conf')]);
  await waitForPort(port, child, 'squid');
  return { port, log, read: () => (existsSync(log) ? readFileSync(log, 'utf8') : '') };
}

/** tinyproxy on loopback, no auth, only the tiny host's address (by IP: tinyproxy resolves names with the system resolver). */
async function startTinyproxy(): Promise<Upstream> {
  const dir = join(work, 'tinyproxy');
  mkdirSync(dir, { mode: 0o777 });
  chmodSync(dir, 0o777);
  const port = await freePort();
  const log = join(dir, 'tinyproxy.log');
  writeFileSync(join(dir, 'filter'), `^${v4('tiny.sim.test').replace(/\./g, '\\.')}$\n`, { mode: 0o644 });
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    `Port ${port}
Listen 127.0.0.1
User nobody
Group nogroup
Timeout 30
MaxClients 20
ConnectPort 443
Filter "${join(dir, 'filter')}"
FilterDefaultDeny Yes
FilterURLs Off
LogLevel Info
LogFile "${log}"
`,
  );
  const { child } = startChild('/usr/bin/tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')]);
  await waitForPort(port, child, 'tinyproxy');
  return { port, log, read: () => (existsSync(log) ? readFileSync(log, 'utf8') : '') };
}

interface CliProxy {
  url: string;
  sniPort: number;
  auditFile: string;
  child: ChildProcess;
  stderr: () => string;
  audit: () => AuditEvent[];
}

async function startCliProxy(name: string, args: string[], policy = policyFile): Promise<CliProxy> {
  const auditFile = join(work, `${name}-audit.jsonl`);
  const { child, output } = startChild(process.execPath, [
    CLI, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--sni-listen', '127.0.0.1:0', '--no-watch',
    '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', auditFile, ...args,
  ]);
  const listening = /listening on 127\.0\.0\.1:(\d+) \(sni 127\.0\.0\.1:(\d+)\)/;
  const deadline = Date.now() + 30_000;
  while (!listening.test(output()) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const match = listening.exec(output());
  if (!match) throw new Error(`portcullis proxy did not start: ${output()}`);
  const audit = (): AuditEvent[] =>
    readFileSync(auditFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditEvent);
  return { url: `http://127.0.0.1:${match[1]}`, sniPort: Number(match[2]), auditFile, child, stderr: output, audit };
}

async function inProcessProxy(opts: Partial<ProxyOptions>): Promise<{ proxy: RunningProxy; events: AuditEvent[]; port: number }> {
  const sink = openAuditSink(undefined);
  const events: AuditEvent[] = [];
  sink.onEvent((e) => events.push(e));
  sinks.push(sink);
  const proxy = await startProxy({ policyFile, listen: { host: '127.0.0.1', port: 0 }, audit: sink, resolver: { host: sim.dns.address, port: sim.dns.port }, ...opts });
  proxies.push(proxy);
  return { proxy, events, port: proxy.address.port };
}

/** Polls until `read()` has `text` (a log line is written when its transaction ends). */
async function waitForLog(upstream: Upstream, text: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  while (!upstream.read().includes(text) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return upstream.read();
}

async function eventually(find: () => AuditEvent | undefined): Promise<AuditEvent> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = find();
    if (found) return found;
    if (Date.now() > deadline) throw new Error('audit event did not arrive');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  sim = await startSimulatedInternet({
    hosts: { 'up.sim.test': {}, 'direct.sim.test': {}, 'denied.sim.test': {}, 'tiny.sim.test': {} },
    extraPorts: [ECHO_PORT],
  });
  // Not under /tmp: `portcullis run` gives CMD a /tmp of its own.
  work = mkdtempSync('/var/tmp/pc-upstream-proxy-');
  chmodSync(work, 0o755);
  caFile = join(work, 'ca.pem');
  writeFileSync(caFile, sim.ca.certPem, { mode: 0o644 });
  policyFile = join(work, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1
network_policies:
  sim:
    endpoints:
      - { host: up.sim.test, ports: [443, 80, ${ECHO_PORT}], allowed_ips: ${cidrs('up.sim.test')} }
      - { host: direct.sim.test, port: 443, allowed_ips: ${cidrs('direct.sim.test')} }
      - { host: ${v4('tiny.sim.test')}, ports: [443, 80], allowed_ips: ["${v4('tiny.sim.test')}/32"] }
`,
  );
  const goodAuth = join(work, 'upstream-auth');
  writeFileSync(goodAuth, `${USER}:${PASSWORD}\n`, { mode: 0o600 });
  const badAuth = join(work, 'upstream-auth-wrong');
  writeFileSync(badAuth, `${USER}:${WRONG_PASSWORD}\n`, { mode: 0o600 });
  [squid, tinyproxy] = await Promise.all([startSquid(), startTinyproxy()]);
  const upstream = `http://127.0.0.1:${squid.port}`;
  [viaSquid, wrongPassword] = await Promise.all([
    startCliProxy('via-squid', ['--upstream-proxy', upstream, '--upstream-proxy-auth-file', goodAuth, '--no-upstream-proxy', 'direct.sim.test']),
    startCliProxy('wrong-password', ['--upstream-proxy', upstream, '--upstream-proxy-auth-file', badAuth]),
  ]);
}, 90_000);

afterAll(async () => {
  for (const p of proxies) await p.close();
  for (const s of sinks) await s.close();
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('TLS inspection through squid', () => {
  it("an inspected request leaves through the upstream proxy's CONNECT, and its audit names the route", async () => {
    const caDir = join(work, 'inspect-ca');
    const made = await run(process.execPath, [CLI, 'ca', 'init', '--out', caDir]);
    expect(made.code).toBe(0);
    const policy = join(work, 'inspect-policy.yaml');
    writeFileSync(policy, `version: 1
network_policies:
  sim:
    endpoints:
      - { host: up.sim.test, port: 443, tls: inspect, allowed_ips: ${cidrs('up.sim.test')} }
`);
    const inspecting = await startCliProxy('inspect-via-squid', ['--upstream-proxy', `http://127.0.0.1:${squid.port}`, '--upstream-proxy-auth-file', join(work, 'upstream-auth'), '--ca-cert', join(caDir, 'ca.crt'), '--ca-key', join(caDir, 'ca.key'), '--upstream-ca', caFile], policy);
    const connects = (): number => (squid.read().match(/CONNECT up\.sim\.test:443 alice/g) ?? []).length;
    const before = connects();
    const got = await run('curl', ['-sS', '--cacert', join(caDir, 'ca.crt'), '-x', inspecting.url, 'https://up.sim.test/inspected-via-squid']);
    expect(got.stderr).toBe('');
    expect(JSON.parse(got.stdout)).toMatchObject({ host: 'up.sim.test', path: '/inspected-via-squid', tls: true });
    // squid carried the re-originated TLS: one more CONNECT of up.sim.test, with the credentials.
    const deadline = Date.now() + 10_000;
    while (connects() === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(connects()).toBe(before + 1);
    const event = await eventually(() => inspecting.audit().find((e) => e.kind === 'http' && e.path === '/inspected-via-squid'));
    expect(event).toMatchObject({ tls: true, decision: 'allow', upstream_proxy: `127.0.0.1:${squid.port}`, dialed: '127.0.0.1' });
  });
});

describe('through squid (basic auth)', () => {
  it('CONNECT: the tunnel opens through squid, the bytes arrive, and the audit says it went via the upstream proxy', async () => {
    const got = await run('curl', ['-sS', '--cacert', caFile, '-x', viaSquid.url, 'https://up.sim.test/through-squid']);
    expect(got.stderr).toBe('');
    expect(JSON.parse(got.stdout)).toMatchObject({ host: 'up.sim.test', path: '/through-squid', tls: true });
    const log = await waitForLog(squid, 'CONNECT up.sim.test:443');
    // squid got the decided host name (it resolved it itself) and the credentials.
    expect(log).toMatch(/TCP_TUNNEL\/200 \d+ CONNECT up\.sim\.test:443 alice /);
    const event = await eventually(() => viaSquid.audit().find((e) => e.kind === 'connect' && e.host === 'up.sim.test' && e.port === 443));
    expect(event).toMatchObject({ decision: 'allow', upstream_proxy: `127.0.0.1:${squid.port}`, dialed: '127.0.0.1' });
    const tunnel = await eventually(() => viaSquid.audit().find((e) => e.kind === 'tunnel' && e.host === 'up.sim.test' && e.port === 443));
    expect(tunnel.bytes_down as number).toBeGreaterThan(got.stdout.length);
  });

  it('plain HTTP goes to squid in absolute form, with the decided host and path', async () => {
    const got = await run('curl', ['-sS', '-x', viaSquid.url, 'http://UP.sim.test/plain/%7Euser?q=1']);
    expect(JSON.parse(got.stdout)).toMatchObject({ host: 'up.sim.test', path: '/plain/~user?q=1', tls: false });
    expect(await waitForLog(squid, 'GET http://up.sim.test/plain/~user?q=1')).toMatch(/GET http:\/\/up\.sim\.test\/plain\/~user\?q=1 alice /);
    const event = await eventually(() => viaSquid.audit().find((e) => e.kind === 'http' && e.path === '/plain/~user?q=1'));
    expect(event).toMatchObject({ decision: 'allow', upstream_proxy: `127.0.0.1:${squid.port}` });
  });

  it('a policy deny never reaches squid', async () => {
    const denied = await rawExchange(Number(new URL(viaSquid.url).port), 'CONNECT denied.sim.test:443 HTTP/1.1\r\nHost: denied.sim.test:443\r\n\r\n');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: 'policy_denied' });
    const plain = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', viaSquid.url, 'http://denied.sim.test/x']);
    expect(plain.stdout).toBe('403');
    // A later allowed request is logged: the log is current, and still names no denied host.
    await run('curl', ['-sS', '-x', viaSquid.url, 'http://up.sim.test/after-deny']);
    const log = await waitForLog(squid, '/after-deny');
    expect(log).toContain('/after-deny');
    expect(log).not.toContain('denied.sim.test');
    const event = viaSquid.audit().find((e) => e.kind === 'connect' && e.host === 'denied.sim.test');
    expect(event).toMatchObject({ decision: 'deny' });
    expect(event!.upstream_proxy).toBeUndefined();
  });

  it('a --no-upstream-proxy host is dialed directly', async () => {
    const got = await run('curl', ['-sS', '--cacert', caFile, '-x', viaSquid.url, 'https://direct.sim.test/direct']);
    expect(JSON.parse(got.stdout)).toMatchObject({ host: 'direct.sim.test', path: '/direct' });
    const event = await eventually(() => viaSquid.audit().find((e) => e.kind === 'connect' && e.host === 'direct.sim.test'));
    expect(event.upstream_proxy).toBeUndefined();
    expect([v4('direct.sim.test'), sim.hosts['direct.sim.test']!.v6]).toContain(event.dialed);
    await run('curl', ['-sS', '-x', viaSquid.url, 'http://up.sim.test/after-direct']);
    expect(await waitForLog(squid, '/after-direct')).not.toContain('direct.sim.test');
  });

  it('the SNI listener opens its tunnel through squid too', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: viaSquid.sniPort, servername: 'up.sim.test', ca: sim.ca.certPem }, () => {
        // No half-close: squid ends a tunnel when either side ends.
        socket.write('GET /sni HTTP/1.1\r\nHost: up.sim.test\r\nConnection: close\r\n\r\n');
      });
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => reject(new Error('SNI tunnel: no answer')));
    });
    expect(body).toContain('"path":"/sni"');
    const event = await eventually(() => viaSquid.audit().find((e) => e.kind === 'sni' && e.host === 'up.sim.test'));
    expect(event).toMatchObject({ decision: 'allow', upstream_proxy: `127.0.0.1:${squid.port}` });
  });

  it("squid's 403 (a port its ACL refuses) is a 502 upstream_proxy_refused, with squid's status audited", async () => {
    const refused = await rawExchange(Number(new URL(viaSquid.url).port), `CONNECT up.sim.test:${ECHO_PORT} HTTP/1.1\r\nHost: up.sim.test\r\n\r\n`);
    expect(refused.status).toBe(502);
    const body = JSON.parse(refused.body) as { error: string; detail: string };
    expect(body.error).toBe('upstream_proxy_refused');
    expect(body.detail).toContain('403');
    const event = await eventually(() => viaSquid.audit().find((e) => e.kind === 'connect' && e.port === ECHO_PORT));
    expect(event).toMatchObject({ decision: 'allow', error: 'upstream_proxy_refused', upstream_proxy_status: 403 });
  });

  it('a wrong password: squid answers 407, the client gets 502 upstream_proxy_auth', async () => {
    const port = Number(new URL(wrongPassword.url).port);
    const refused = await rawExchange(port, 'CONNECT up.sim.test:443 HTTP/1.1\r\nHost: up.sim.test\r\n\r\n');
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'upstream_proxy_auth', host: 'up.sim.test', port: 443 });
    const curl = await run('curl', ['-sS', '--cacert', caFile, '-x', wrongPassword.url, 'https://up.sim.test/']);
    expect(curl.stderr).toMatch(/502/);
    const event = await eventually(() => wrongPassword.audit().find((e) => e.kind === 'connect' && e.error === 'upstream_proxy_auth'));
    expect(event.upstream_proxy_status).toBe(407);
    expect(await waitForLog(squid, 'TCP_DENIED/407')).toMatch(/TCP_DENIED\/407 \d+ CONNECT up\.sim\.test:443 alice /);
  });

  it("plain HTTP with a wrong password: squid's 407 becomes 502 upstream_proxy_auth, audited; other answers pass as they are", async () => {
    const port = Number(new URL(wrongPassword.url).port);
    const refused = await rawExchange(port, 'GET http://up.sim.test/needs-auth HTTP/1.1\r\nHost: up.sim.test\r\n\r\n');
    expect(refused.status).toBe(502);
    expect(refused.headers['proxy-authenticate']).toBeUndefined();
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'upstream_proxy_auth', host: 'up.sim.test', port: 80 });
    const event = await eventually(() => wrongPassword.audit().find((e) => e.kind === 'http' && e.error === 'upstream_proxy_auth'));
    expect(event.upstream_proxy_status).toBe(407);
    // An origin's own status (here 404) and squid's refusal of a port are answers, passed on unchanged.
    const viaPort = Number(new URL(viaSquid.url).port);
    expect((await rawExchange(viaPort, 'GET http://up.sim.test/status/404 HTTP/1.1\r\nHost: up.sim.test\r\n\r\n')).status).toBe(404);
    const squidRefusal = await rawExchange(viaPort, `GET http://up.sim.test:${ECHO_PORT}/ HTTP/1.1\r\nHost: up.sim.test\r\n\r\n`);
    expect(squidRefusal.status).toBe(403);
    expect(squidRefusal.headers.server).toMatch(/squid/);
  });

  it('the password is in no audit file, no stderr and no answer', async () => {
    // Plain HTTP through the wrong-password proxy too: its request carries the credentials.
    await run('curl', ['-sS', '-x', wrongPassword.url, 'http://up.sim.test/secret-check']);
    for (const p of [viaSquid, wrongPassword]) {
      p.child.kill('SIGTERM');
      await new Promise((resolve) => (p.child.exitCode !== null ? resolve(null) : p.child.once('exit', resolve)));
    }
    const texts = [readFileSync(viaSquid.auditFile, 'utf8'), readFileSync(wrongPassword.auditFile, 'utf8'), viaSquid.stderr(), wrongPassword.stderr()];
    expect(texts[0]).toContain('upstream_proxy');
    for (const text of texts) for (const secret of SECRETS) expect(text).not.toContain(secret);
  });
});

describe('through tinyproxy', () => {
  it('plain HTTP in absolute form and CONNECT to an IP literal', async () => {
    const { port, events } = await inProcessProxy({ upstreamProxy: { host: '127.0.0.1', port: tinyproxy.port } });
    const address = v4('tiny.sim.test');
    const plain = await run('curl', ['-sS', '-x', `http://127.0.0.1:${port}`, `http://${address}/via-tinyproxy`]);
    expect(JSON.parse(plain.stdout)).toMatchObject({ host: address, path: '/via-tinyproxy', tls: false });
    const tunnel = await run('curl', ['-sS', '--cacert', caFile, '-x', `http://127.0.0.1:${port}`, `https://${address}/tinyproxy-tls`]);
    expect(JSON.parse(tunnel.stdout)).toMatchObject({ path: '/tinyproxy-tls', tls: true });
    const log = await waitForLog(tinyproxy, `CONNECT ${address}:443`);
    expect(log).toContain(`GET http://${address}/via-tinyproxy`);
    const event = await waitForEvent(events, (e) => e.kind === 'http' && e.path === '/via-tinyproxy');
    expect(event).toMatchObject({ decision: 'allow', upstream_proxy: `127.0.0.1:${tinyproxy.port}` });
  });
});

describe('upstream proxy down', () => {
  it('answers 502 upstream_proxy_unreachable for a tunnel and for plain HTTP', async () => {
    const dead = await freePort();
    const { port, events } = await inProcessProxy({ upstreamProxy: { host: '127.0.0.1', port: dead } });
    const tunnel = await rawExchange(port, 'CONNECT up.sim.test:443 HTTP/1.1\r\nHost: up.sim.test\r\n\r\n');
    expect(tunnel.status).toBe(502);
    expect(JSON.parse(tunnel.body)).toMatchObject({ error: 'upstream_proxy_unreachable' });
    const plain = await rawExchange(port, 'GET http://up.sim.test/x HTTP/1.1\r\nHost: up.sim.test\r\n\r\n');
    expect(plain.status).toBe(502);
    expect(JSON.parse(plain.body)).toMatchObject({ error: 'upstream_proxy_unreachable' });
    const event = await waitForEvent(events, (e) => e.kind === 'connect' && e.error === 'upstream_proxy_unreachable');
    expect(event.upstream_proxy).toBe(`127.0.0.1:${dead}`);
  });
});

describe('portcullis run --upstream-proxy', () => {
  it("CMD's requests leave through squid, with the credentials file", async () => {
    const auditFile = join(work, 'run-audit.jsonl');
    const script = `curl -sS --cacert ${caFile} https://up.sim.test/run-tls && echo && curl -sS http://up.sim.test/run-plain`;
    const got = await run(
      process.execPath,
      [
        CLI, 'run', '--policy', policyFile, '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', auditFile, '--quiet',
        '--upstream-proxy', `http://127.0.0.1:${squid.port}`, '--upstream-proxy-auth-file', join(work, 'upstream-auth'),
        '--', 'sh', '-c', script,
      ],
      process.env,
      60_000,
    );
    expect(got.code, got.stderr).toBe(0);
    const [tlsLine, plainLine] = got.stdout.trim().split('\n');
    expect(JSON.parse(tlsLine!)).toMatchObject({ path: '/run-tls', tls: true });
    expect(JSON.parse(plainLine!)).toMatchObject({ path: '/run-plain', tls: false });
    expect(await waitForLog(squid, 'GET http://up.sim.test/run-plain')).toMatch(/GET http:\/\/up\.sim\.test\/run-plain alice /);
    const audit = readFileSync(auditFile, 'utf8');
    const events = audit.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEvent);
    expect(events.find((e) => e.kind === 'connect' && e.host === 'up.sim.test')).toMatchObject({ decision: 'allow', upstream_proxy: `127.0.0.1:${squid.port}` });
    for (const secret of SECRETS) {
      expect(audit).not.toContain(secret);
      expect(got.stderr).not.toContain(secret);
    }
  }, 90_000);

  it('refuses a credentials file others can read (usage error, exit 2)', async () => {
    const open = join(work, 'upstream-auth-open');
    writeFileSync(open, `${USER}:${PASSWORD}\n`, { mode: 0o644 });
    chmodSync(open, 0o644);
    const got = await run(process.execPath, [CLI, 'run', '--policy', policyFile, '--upstream-proxy', `http://127.0.0.1:${squid.port}`, '--upstream-proxy-auth-file', open, '--', 'true']);
    expect(got.code).toBe(2);
    expect(got.stderr).toContain('readable by others');
    expect(got.stderr).not.toContain(PASSWORD);
  });
});

describe('portcullis proxy flags', () => {
  it('refuses credentials in the URL and --no-upstream-proxy without --upstream-proxy (exit 2, nothing echoed)', async () => {
    const inUrl = await run(process.execPath, [CLI, 'proxy', '--policy', policyFile, '--listen', '127.0.0.1:0', '--upstream-proxy', `http://${USER}:${PASSWORD}@127.0.0.1:3128`]);
    expect(inUrl.code).toBe(2);
    expect(inUrl.stderr).toContain('--upstream-proxy-auth-file');
    expect(inUrl.stderr).not.toContain(PASSWORD);
    const orphan = await run(process.execPath, [CLI, 'proxy', '--policy', policyFile, '--listen', '127.0.0.1:0', '--no-upstream-proxy', 'direct.sim.test']);
    expect(orphan.code).toBe(2);
    expect(orphan.stderr).toContain('need --upstream-proxy');
  });
});
