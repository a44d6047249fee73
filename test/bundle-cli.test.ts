// The policy from a bundle on the long-running commands, through the real CLI: `proxy --bundle`
// (verified), `proxy --config` (deny-all until the first activation, then each new revision
// decides the next connection and cuts an open tunnel it denies), `decider --bundle` and
// `run --bundle`; against the simulated internet.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader } from '../src/decider/frames.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';
const ECHO_PORT = 7777;
let sim: SimulatedInternet;
let work: string;
let publicKey: string;
const children: ChildProcess[] = [];

function policy(hosts: string[]): string {
  return `version: 1\nnetwork_policies:\n  fleet:\n    endpoints:\n${hosts.map((h) => `      - { host: ${h}, ports: [443, ${ECHO_PORT}], allowed_ips: ${DOCS} }\n`).join('')}`;
}

function build(rev: string, hosts: string[]): string {
  const file = join(work, `policy-${rev}.yaml`);
  writeFileSync(file, policy(hosts));
  const out = join(work, `bundle-${rev}.tar.gz`);
  execFileSync(process.execPath, [CLI, 'build', '--policy', file, '--revision', rev, '--signing-key', join(work, 'key.pem'), '--out', out]);
  return out;
}

function startProxy(args: string[]): Promise<{ child: ChildProcess; port: number; stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, 'proxy', '--listen', '127.0.0.1:0', '--resolver', `${sim.dns.address}:${sim.dns.port}`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let text = '';
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start: ${text}`)), 30_000);
    child.stderr!.on('data', () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), stderr: () => text });
      }
    });
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}: ${text}`)));
  });
}

/** CONNECT host:port; resolves with the status and, for 200, the open socket. */
function connect(port: number, target: string): Promise<{ status: number; socket: net.Socket; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let buf = '';
    socket.on('error', reject);
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const status = Number(buf.split(' ')[1]);
      if (status !== 200) {
        socket.once('end', () => resolve({ status, socket, body: buf.slice(end + 4) }));
        return;
      }
      socket.off('data', onData);
      resolve({ status, socket, body: '' });
    };
    socket.on('data', onData);
  });
}

async function until(what: string, probe: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'one.fleet.example': {}, 'two.fleet.example': {} }, extraPorts: [ECHO_PORT] });
  work = mkdtempSync('/var/tmp/portcullis-bundle-cli-');
  chmodSync(work, 0o755);
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(work, 'key.pem'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  publicKey = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(join(work, 'pub.pem'), publicKey);
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('proxy --bundle', () => {
  it('decides by a verified bundle, and refuses to start on an unsigned one when a key is given', async () => {
    const bundle = build('b1', ['one.fleet.example']);
    const { port } = await startProxy(['--bundle', bundle, '--verification-key', join(work, 'pub.pem')]);
    const allowed = await connect(port, `one.fleet.example:${ECHO_PORT}`);
    expect(allowed.status).toBe(200);
    allowed.socket.destroy();
    expect((await connect(port, `two.fleet.example:${ECHO_PORT}`)).status).toBe(403);
    const unsigned = join(work, 'unsigned.tar.gz');
    execFileSync(process.execPath, [CLI, 'build', '--policy', join(work, 'policy-b1.yaml'), '--out', unsigned]);
    const refused = spawnSyncCli(['proxy', '--listen', '127.0.0.1:0', '--bundle', unsigned, '--verification-key', join(work, 'pub.pem')]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('not signed');
  }, 60_000);
});

function spawnSyncCli(args: string[]): { status: number; stderr: string } {
  try {
    execFileSync(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
    return { status: 0, stderr: '' };
  } catch (err) {
    const e = err as { status: number; stderr: Buffer };
    return { status: e.status, stderr: e.stderr.toString() };
  }
}

describe('proxy --config', () => {
  it('denies with a reason until a bundle is active, then follows each new revision, cutting an open tunnel the new one denies', async () => {
    let body: Buffer | undefined;
    let etag = 0;
    const server = http.createServer((req, res) => {
      if (!body) return void res.writeHead(503).end();
      if (req.headers['if-none-match'] === `"${etag}"`) return void res.writeHead(304).end();
      res.writeHead(200, { etag: `"${etag}"` }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const config = join(work, 'config.yaml');
    writeFileSync(
      config,
      `services:\n  s:\n    url: http://127.0.0.1:${port}\nbundles:\n  fleet:\n    service: s\n    resource: b.tar.gz\n    polling:\n      min_delay_seconds: 1\n      max_delay_seconds: 1\nkeys:\n  default:\n    key: |\n${publicKey.trim().split('\n').map((l) => `      ${l}`).join('\n')}\npersistence_directory: ${join(work, 'persist')}\ndiscovery:\n  name: x\n`,
    );
    const audit = join(work, 'config-audit.jsonl');
    const proxy = await startProxy(['--config', config, '--audit', audit]);
    try {
      expect(proxy.stderr()).toContain('discovery: an OPA setting portcullis does not apply');
      const before = await connect(proxy.port, `one.fleet.example:${ECHO_PORT}`);
      expect(before.status).toBe(403);
      expect(before.body).toContain('no policy bundle has been activated yet');
      body = readFileSync(build('c1', ['one.fleet.example']));
      await until('c1 active', () => proxy.stderr().includes('revision c1 active'));
      const open = await connect(proxy.port, `one.fleet.example:${ECHO_PORT}`);
      expect(open.status).toBe(200);
      const closed = new Promise<boolean>((resolve) => open.socket.once('close', () => resolve(true)));
      body = readFileSync(build('c2', ['two.fleet.example']));
      etag++;
      await until('c2 active', () => proxy.stderr().includes('revision c2 active'));
      expect(await closed).toBe(true);
      expect((await connect(proxy.port, `two.fleet.example:${ECHO_PORT}`)).status).toBe(200);
      expect((await connect(proxy.port, `one.fleet.example:${ECHO_PORT}`)).status).toBe(403);
      // The activation of c2 closed the open tunnel, and said so (lines reach the file in batches).
      const reloadsClosing = (): boolean =>
        readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).some((e) => e.kind === 'reload' && e.ok === true && e.tunnels_closed === 1);
      await until('a reload event that closed the tunnel', reloadsClosing);
    } finally {
      proxy.child.kill('SIGTERM');
      server.close();
    }
  }, 90_000);
});

describe('decider --bundle', () => {
  it('lists the bundle policy hosts in its hello', async () => {
    const bundle = build('d1', ['one.fleet.example', 'two.fleet.example']);
    const child = spawn(process.execPath, [CLI, 'decider', '--bundle', bundle, '--verification-key', join(work, 'pub.pem')], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    const reader = new FrameReader();
    const hello = new Promise<Record<string, unknown>>((resolve) => child.stdout!.on('data', (d: Buffer) => reader.feed(d).forEach((f) => resolve(JSON.parse(f.toString()) as Record<string, unknown>))));
    child.stdin!.write(encodeFrame({ t: 'hello', proto: 1 }));
    expect((await hello).allowedDomains).toEqual(['one.fleet.example:443', `one.fleet.example:${ECHO_PORT}`, 'two.fleet.example:443', `two.fleet.example:${ECHO_PORT}`]);
    child.stdin!.end();
  }, 30_000);
});

describe('run --bundle', () => {
  it('runs CMD behind a proxy, DNS proxy and fence made from the bundle', async () => {
    const bundle = build('r1', ['one.fleet.example']);
    const caFile = join(work, 'sim-ca.pem');
    writeFileSync(caFile, sim.ca.certPem, { mode: 0o644 });
    // Not execFileSync: the simulated internet's DNS server answers from this process.
    const child = spawn(
      process.execPath,
      [CLI, 'run', '--bundle', bundle, '--verification-key', join(work, 'pub.pem'), '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--quiet', '--', 'sh', '-c',
        `curl -s --cacert ${caFile} -o /dev/null -w '%{http_code} ' https://one.fleet.example/; curl -s --cacert ${caFile} -o /dev/null -w '%{http_code}' https://two.fleet.example/ || echo ' refused'`],
      { cwd: work, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    expect(await new Promise((resolve) => child.once('close', resolve))).toBe(0);
    // The second host: the proxy answers the CONNECT with 403, curl reports no HTTP status.
    expect(out.trim()).toBe('200 000 refused');
  }, 90_000);
});
