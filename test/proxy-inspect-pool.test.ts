// Inspected client connections share the proxy's idle upstream connections: the real
// `portcullis proxy` CLI inspecting (its CA from `portcullis ca init`), a node TLS client through
// CONNECT, and an upstream in the simulated internet that numbers its TLS connections
// (fixtures/inspect/pool-upstream.mjs). Each client connection is CONNECT + TLS + one GET + close,
// as most clients do; the upstream says which of its connections each request came on.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInspectingProxy, startWorld, type InspectingProxy, type InspectWorld } from './fixtures/inspect/env.js';
import { openTunnel } from './fixtures/proxy/harness.js';
import { waitFor } from './support/audit-proxy.js';

let world: InspectWorld;
let proxy: InspectingProxy;
let upstream: ChildProcess;

function policy(): string {
  const ips = (host: string): string => JSON.stringify([`${world.sim.hosts[host]!.v4}/32`, `${world.sim.hosts[host]!.v6}/128`]);
  const endpoint = (host: string): string => `      - host: ${host}
        ports: [9443, 9444]
        allowed_ips: ${ips(host)}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
`;
  return `version: 1\nnetwork_policies:\n  pool:\n    endpoints:\n${endpoint('api.sim.test')}${endpoint('other.sim.test')}`;
}

async function startPoolUpstream(): Promise<ChildProcess> {
  const hosts = ['api.sim.test', 'other.sim.test'];
  const cert = await world.sim.ca.issue(hosts);
  const child = spawn('ip', ['netns', 'exec', world.sim.netns, process.execPath, join(import.meta.dirname, 'fixtures/inspect/pool-upstream.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  child.stdin!.write(`${JSON.stringify(cert)}\n`);
  await waitFor('the pool upstream', () => out.includes('ready') || child.exitCode !== null, 20_000);
  if (!out.includes('ready')) throw new Error(`pool upstream: ${out}`);
  return child;
}

/** Answers keep api.sim.test's records out of the proxy's DNS cache: each connection sees the current ones. */
function setApiRecords(v4: boolean, v6: boolean): void {
  const h = world.sim.hosts['api.sim.test']!;
  world.sim.dns.setRecords('api.sim.test', { A: v4 ? [h.v4!] : [], AAAA: v6 ? [h.v6!] : [], ttl: 0 });
}

beforeAll(async () => {
  world = await startWorld();
  upstream = await startPoolUpstream();
  setApiRecords(true, true);
  const policyFile = join(world.dir, 'pool-policy.yaml');
  writeFileSync(policyFile, policy());
  proxy = await startInspectingProxy(world, [], policyFile);
}, 90_000);

afterAll(async () => {
  await proxy?.stop();
  upstream?.stdin?.end();
  upstream?.kill('SIGTERM');
  await world?.close();
});

interface Answer {
  status: number;
  body: string;
  /** The upstream's number of the TLS connection the request came on (from its JSON answer). */
  conn: number;
  local: string;
}

/** One inspected client connection: CONNECT host:9443, TLS (trusting the inspection CA), one GET, close. */
async function get(host: string, path: string): Promise<Answer> {
  const tunnel = await openTunnel(proxy.port, `${host}:9443`);
  expect(tunnel.status).toBe(200);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ socket: tunnel.socket, servername: host, ca: world.caPem, ALPNProtocols: ['http/1.1'] }, () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:9443\r\nConnection: close\r\n\r\n`),
    );
    const timer = setTimeout(() => socket.destroy(new Error(`GET ${path}: no answer`)), 10_000);
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      const json = status === 200 ? (JSON.parse(body) as { conn: number; local: string }) : { conn: 0, local: '' };
      resolve({ status, body, conn: json.conn, local: json.local });
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** The upstream's own account: its open connections and the paths each one was asked for. */
function stats(): Promise<{ open: number[]; seen: Record<string, string[]>; h2open: number[] }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://${world.sim.hosts['api.sim.test']!.v4}:9080/stats`, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

/** One inspected HTTP/2 client connection to host:9444: one GET, then the session ends; the upstream's number of its session. */
async function getH2(host: string, path: string): Promise<number> {
  const tunnel = await openTunnel(proxy.port, `${host}:9444`);
  expect(tunnel.status).toBe(200);
  const session = http2.connect(`https://${host}:9444`, {
    createConnection: () => tls.connect({ socket: tunnel.socket, servername: host, ca: world.caPem, ALPNProtocols: ['h2'] }),
  });
  session.on('error', () => undefined);
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': path });
      const timer = setTimeout(() => reject(new Error(`h2 GET ${path}: no answer`)), 10_000);
      let body = '';
      req.on('response', (h) => (h[':status'] === 200 ? undefined : reject(new Error(`h2 GET ${path}: ${h[':status']}`))));
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        clearTimeout(timer);
        resolve((JSON.parse(body) as { conn: number }).conn);
      });
      req.on('error', reject);
      req.end();
    });
  } finally {
    session.destroy();
  }
}

async function untilClosed(conn: number, which: 'open' | 'h2open' = 'open'): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await stats())[which].includes(conn)) {
    if (Date.now() > deadline) throw new Error(`upstream connection ${conn} is still open`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('inspected client connections share upstream connections', () => {
  it('a second client connection to the same host goes on the first one’s upstream connection (no new TCP connect, no TLS handshake)', async () => {
    const first = await get('api.sim.test', '/v1/first');
    const second = await get('api.sim.test', '/v1/second');
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.conn).toBe(first.conn);
    const event = await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/second');
    expect(event).toMatchObject({ decision: 'allow', status: 200, upstream_reused: true, dialed: world.sim.hosts['api.sim.test']!.v4 });
    expect((await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/first')).upstream_reused).toBeUndefined();
  });

  it('another host, or a connection whose checked address is another, dials its own', async () => {
    const pooled = await get('api.sim.test', '/v1/pooled');
    const other = await get('other.sim.test', '/v1/other-host');
    expect(other.status).toBe(200);
    expect(other.conn).not.toBe(pooled.conn);
    // api.sim.test now resolves to its IPv6 address only: the idle connection to its IPv4 address
    // was not checked for this client connection.
    setApiRecords(false, true);
    try {
      const moved = await get('api.sim.test', '/v1/moved');
      expect(moved.status).toBe(200);
      expect(moved.local).toBe(world.sim.hosts['api.sim.test']!.v6);
      expect(moved.conn).not.toBe(pooled.conn);
      expect((await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/moved')).upstream_reused).toBeUndefined();
    } finally {
      setApiRecords(true, true);
    }
    // Back on IPv4: the idle connection to it serves again.
    expect((await get('api.sim.test', '/v1/back')).conn).toBe(pooled.conn);
  });

  it('a response with Connection: close, and a response the client left half-read, leave their connection unpooled', async () => {
    const closing = await get('api.sim.test', '/v1/close');
    expect(closing.status).toBe(200);
    const after = await get('api.sim.test', '/v1/after-close');
    expect(after.conn).not.toBe(closing.conn);

    // The client reads the head and a little of an endless body, then leaves.
    const tunnel = await openTunnel(proxy.port, 'api.sim.test:9443');
    const bigConn = await new Promise<number>((resolve, reject) => {
      const socket = tls.connect({ socket: tunnel.socket, servername: 'api.sim.test', ca: world.caPem, ALPNProtocols: ['http/1.1'] }, () =>
        socket.write('GET /v1/big HTTP/1.1\r\nHost: api.sim.test:9443\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        const conn = /x-conn: (\d+)/i.exec(text);
        if (conn && text.length > 10_000) {
          socket.destroy();
          resolve(Number(conn[1]));
        }
      });
      socket.on('error', reject);
    });
    await untilClosed(bigConn);
    const next = await get('api.sim.test', '/v1/after-big');
    expect(next.conn).not.toBe(bigConn);
  });

  it('a denied request never reaches the pooled connection, which serves the next allowed one', async () => {
    const pooled = await get('api.sim.test', '/v1/before-denied');
    const denied = await get('api.sim.test', '/v2/denied');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: 'policy_denied' });
    const allowed = await get('api.sim.test', '/v1/after-denied');
    expect(allowed.conn).toBe(pooled.conn);
    const { seen } = await stats();
    expect(Object.values(seen).flat()).not.toContain('/v2/denied');
    expect(seen[String(pooled.conn)]).toContain('/v1/after-denied');
  });

  it('HTTP/2 clients share one upstream HTTP/2 session; a reload closes it', async () => {
    const first = await getH2('api.sim.test', '/v1/h2-first');
    const second = await getH2('api.sim.test', '/v1/h2-second');
    expect(second).toBe(first);
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/h2-second')).toMatchObject({ alpn: 'h2', status: 200, upstream_reused: true, dialed: world.sim.hosts['api.sim.test']!.v4 });
    // The session outlives the client connection that made it, and serves no other host.
    expect((await stats()).h2open).toContain(first);
    expect(await getH2('other.sim.test', '/v1/h2-other')).not.toBe(first);
    await proxy.reload();
    await untilClosed(first, 'h2open');
    expect(await getH2('api.sim.test', '/v1/h2-after-reload')).not.toBe(first);
  });

  it('a policy reload closes the idle upstream connections; the next request dials anew', async () => {
    const first = await get('api.sim.test', '/v1/before-reload');
    expect((await get('api.sim.test', '/v1/still-pooled')).conn).toBe(first.conn);
    await proxy.reload();
    await untilClosed(first.conn);
    const next = await get('api.sim.test', '/v1/after-reload');
    expect(next.status).toBe(200);
    expect(next.conn).not.toBe(first.conn);
  });
});
