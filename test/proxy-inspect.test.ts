// TLS inspection end to end: the real `portcullis proxy` with --ca-cert/--ca-key from
// `portcullis ca init`, real clients (curl HTTP/1.1 and --http2, Python, Node, a gRPC client,
// a WebSocket exchange) given the inspection CA, through CONNECT and the SNI listener, to HTTPS
// servers of the simulated internet (verified with --upstream-ca). Every request on an inspected
// connection is decided by method, path and authority, answered and audited on its own.
import http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h1Case, h2Case, prng } from './fixtures/inspect/fuzz-cases.js';
import { openTunnel, run } from './fixtures/proxy/harness.js';
import { policyText, startInspectingProxy, startWorld, type InspectingProxy, type InspectWorld } from './fixtures/inspect/env.js';

let world: InspectWorld;
let proxy: InspectingProxy;

beforeAll(async () => {
  world = await startWorld();
  proxy = await startInspectingProxy(world);
}, 90_000);

afterAll(async () => {
  await proxy?.stop();
  await world?.close();
});

function curl(args: string[]) {
  return run('curl', ['-sS', '--max-time', '15', '--cacert', world.caFile, '-x', proxy.url, ...args]);
}

describe('HTTP/1.1 through CONNECT', () => {
  it('curl: an allowed path is forwarded, a path no rule allows and a deny-rule path get the 403 JSON; each request is audited', async () => {
    const ok = await curl(['--http1.1', 'https://api.sim.test/v1/hello?token=secret']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ host: 'api.sim.test', path: '/v1/hello?token=secret', tls: true });
    const denied = await curl(['--http1.1', '-i', 'https://api.sim.test/v2/other']);
    expect(denied.stdout).toMatch(/^HTTP\/1\.1 403/m);
    expect(denied.stdout).toMatch(/x-portcullis-decision: deny/i);
    const body = JSON.parse(denied.stdout.slice(denied.stdout.indexOf('{')));
    expect(body).toMatchObject({ error: 'policy_denied', host: 'api.sim.test', port: 443, binary: '/usr/bin/curl' });
    expect(body.detail).toContain('GET /v2/other');
    const ruled = await curl(['--http1.1', '-i', 'https://api.sim.test/v1/admin/users']);
    expect(ruled.stdout).toMatch(/^HTTP\/1\.1 403/m);
    expect(ruled.stdout).toContain('deny rule');

    const event = await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/hello');
    // The query is not recorded: it may carry secrets.
    expect(event).toMatchObject({ decision: 'allow', method: 'GET', tls: true, alpn: 'http/1.1', status: 200, binary: '/usr/bin/curl', policy: 'api', host: 'api.sim.test', port: 443 });
    expect(event.bytes_down).toBeGreaterThan(20);
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v2/other')).toMatchObject({ decision: 'deny', status: 403, error: 'policy_denied', tls: true });
    expect(await proxy.waitForEvent((e) => e.kind === 'connect' && e.host === 'api.sim.test')).toMatchObject({ decision: 'allow', inspect: true });
    expect(await proxy.waitForEvent((e) => e.kind === 'tunnel' && e.host === 'api.sim.test')).toMatchObject({ inspected: true, alpn: 'http/1.1' });
  });

  it('keep-alive: allowed, denied, allowed on one connection, each decided', async () => {
    const res = await curl(['-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null', '--http1.1',
      'https://api.sim.test/v1/ka-1', 'https://api.sim.test/v2/ka-2', 'https://api.sim.test/v1/ka-3']);
    expect(res.stdout.trim().split('\n')).toEqual(['200 1', '403 0', '200 0']);
    for (const [path, decision] of [['/v1/ka-1', 'allow'], ['/v2/ka-2', 'deny'], ['/v1/ka-3', 'allow']] as const) {
      expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === path)).toMatchObject({ decision });
    }
  });
});

describe('HTTP/2', () => {
  it('curl --http2: h2 to the client, h2 upstream where offered, HTTP/1.1 upstream otherwise', async () => {
    const h2 = await curl(['--http2', '-w', '\\n%{http_version}', 'https://api.sim.test:8443/v1/two']);
    const [body, version] = h2.stdout.split('\n');
    expect(version).toBe('2');
    expect(JSON.parse(body!)).toMatchObject({ path: '/v1/two', httpVersion: '2.0', host: 'api.sim.test:8443' });
    const h1up = await curl(['--http2', '-w', '\\n%{http_version}', 'https://api.sim.test/v1/down']);
    expect(h1up.stdout.split('\n')[1]).toBe('2');
    expect(JSON.parse(h1up.stdout.split('\n')[0]!)).toMatchObject({ path: '/v1/down', tls: true });
    const denied = await curl(['--http2', '-i', 'https://api.sim.test:8443/v1/admin/x']);
    expect(denied.stdout).toMatch(/^HTTP\/2 403/m);
    expect(JSON.parse(denied.stdout.slice(denied.stdout.indexOf('{')))).toMatchObject({ error: 'policy_denied' });
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/two')).toMatchObject({ alpn: 'h2', status: 200, decision: 'allow' });
  });
});

describe('other clients', () => {
  it('python3 urllib and requests, trusting the CA through SSL_CERT_FILE / REQUESTS_CA_BUNDLE', async () => {
    const env = { ...process.env, https_proxy: proxy.url, no_proxy: '', SSL_CERT_FILE: world.caFile, REQUESTS_CA_BUNDLE: world.caFile };
    const script = `
import json, urllib.request, urllib.error, requests
out = {}
out['urllib'] = json.loads(urllib.request.urlopen('https://api.sim.test/v1/py-urllib', timeout=10).read())
try:
    urllib.request.urlopen('https://api.sim.test/v1/admin/py', timeout=10)
except urllib.error.HTTPError as e:
    out['urllib_denied'] = e.code
r = requests.get('https://api.sim.test/v1/py-requests', timeout=10)
out['requests'] = [r.status_code, r.json()]
out['requests_denied'] = requests.post('https://api.sim.test/v3/x', data=b'abc', timeout=10).status_code
print(json.dumps(out))
`;
    const res = await run('python3', ['-c', script], env);
    expect(res.stderr).toBe('');
    const out = JSON.parse(res.stdout);
    expect(out.urllib).toMatchObject({ path: '/v1/py-urllib', tls: true });
    expect(out.urllib_denied).toBe(403);
    expect(out.requests).toEqual([200, expect.objectContaining({ path: '/v1/py-requests' })]);
    expect(out.requests_denied).toBe(403);
  });

  it("node https through a CONNECT agent, trusting the CA through NODE_EXTRA_CA_CERTS; a POST body goes up", async () => {
    const script = `
const https = require('node:https');
const { HttpsProxyAgent } = require('https-proxy-agent');
const agent = new HttpsProxyAgent(process.env.PROXY);
const req = https.request('https://api.sim.test/v1/node-post', { method: 'POST', agent, headers: { 'content-type': 'text/plain' } }, (res) => {
  let body = '';
  res.on('data', (c) => (body += c));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body: JSON.parse(body) })));
});
req.end('x'.repeat(100000));
`;
    const res = await run(process.execPath, ['-e', script], { ...process.env, PROXY: proxy.url, NODE_EXTRA_CA_CERTS: world.caFile, NODE_PATH: `${process.cwd()}/node_modules` });
    expect(JSON.parse(res.stdout)).toEqual({ status: 200, body: expect.objectContaining({ method: 'POST', path: '/v1/node-post', bodyBytes: 100000 }) });
    const event = await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/node-post');
    expect(event).toMatchObject({ method: 'POST', status: 200, bytes_up: 100000, binary: process.execPath });
  });
});

/** A TLS session to `host` through a CONNECT tunnel (the client's SNI and ALPN as given). */
function tlsThroughTunnel(target: string, servername: string, alpn: string[]): Promise<tls.TLSSocket> {
  return tlsThroughTunnelWith(target, { servername, ALPNProtocols: alpn });
}

/** The same with other client options (server name, ciphers, ALPN). */
async function tlsThroughTunnelWith(target: string, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  const tunnel = await openTunnel(proxy.port, target);
  expect(tunnel.status).toBe(200);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ socket: tunnel.socket, servername: target.split(':')[0], ca: world.caPem, ...options }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function h2Get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
  });
}

describe('the upstream side', () => {
  it('a new upstream connection resumes the TLS session an earlier one verified (no second chain check)', async () => {
    const first = JSON.parse((await curl(['--http1.1', 'https://api.sim.test:8443/v1/resume-1'])).stdout);
    // A reload empties the pool of idle upstream connections: the next request dials anew.
    await proxy.reload();
    const second = JSON.parse((await curl(['--http1.1', 'https://api.sim.test:8443/v1/resume-2'])).stdout);
    expect(first.path).toBe('/v1/resume-1');
    expect(second).toMatchObject({ path: '/v1/resume-2', resumed: true });
  });
});

describe('cipher suites', () => {
  it('both legs of an inspected connection use TLS_AES_128_GCM_SHA256 (picked for the client, offered first upstream); a client that puts ChaCha20 first, or offers only AES-256, gets it', async () => {
    const get = async (ciphers?: string): Promise<{ client: string; upstream: string }> => {
      const socket = await tlsThroughTunnelWith('api.sim.test:8443', { ...(ciphers ? { ciphers } : {}), ALPNProtocols: ['http/1.1'] });
      const client = socket.getCipher().name;
      socket.write('GET /v1/cipher HTTP/1.1\r\nHost: api.sim.test:8443\r\nConnection: close\r\n\r\n');
      let raw = '';
      for await (const chunk of socket) raw += String(chunk);
      return { client, upstream: JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).cipher };
    };
    // Node's own default order puts AES-256-GCM first: the proxy's order decides.
    expect(await get()).toEqual({ client: 'TLS_AES_128_GCM_SHA256', upstream: 'TLS_AES_128_GCM_SHA256' });
    expect((await get('TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256')).client).toBe('TLS_CHACHA20_POLY1305_SHA256');
    expect((await get('TLS_AES_256_GCM_SHA384')).client).toBe('TLS_AES_256_GCM_SHA384');
  });
});

describe('HTTP/2 trailers', () => {
  it("the upstream's trailers reach an HTTP/2 client, and a request body with the client's trailers goes up", async () => {
    const socket = await tlsThroughTunnel('api.sim.test:8443', 'api.sim.test', ['h2']);
    const session = http2.connect('https://api.sim.test:8443', { createConnection: () => socket });
    try {
      const got = await new Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/v1/trailers', ':authority': 'api.sim.test:8443', te: 'trailers' }, { waitForTrailers: true });
        let status = 0;
        let body = '';
        let trailers: http2.IncomingHttpHeaders = {};
        req.on('wantTrailers', () => req.sendTrailers({ 'x-client-sum': '7' }));
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('trailers', (t) => (trailers = t));
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => resolve({ status, body, trailers }));
        req.on('error', reject);
        req.end('1234567');
      });
      expect(got).toMatchObject({ status: 200, body: 'with trailers' });
      expect(got.trailers['x-checksum']).toBe('got-7');
    } finally {
      session.destroy();
    }
  });
});

describe('refusals that are specific to inspection', () => {
  it('HTTP/2: a stream for another host (connection coalescing) gets 421 on that stream; the other streams go on', async () => {
    const socket = await tlsThroughTunnel('api.sim.test:8443', 'api.sim.test', ['h2']);
    const session = http2.connect('https://api.sim.test:8443', { createConnection: () => socket });
    try {
      const [first, other, after] = await Promise.all([
        h2Get(session, { ':path': '/v1/first', ':authority': 'api.sim.test:8443' }),
        h2Get(session, { ':path': '/v1/first', ':authority': 'other.sim.test:8443' }),
        h2Get(session, { ':path': '/v1/after', ':authority': 'api.sim.test:8443' }),
      ]);
      expect(first.status).toBe(200);
      expect(other.status).toBe(421);
      expect(JSON.parse(other.body)).toMatchObject({ error: 'authority_mismatch' });
      expect(after.status).toBe(200);
      expect(JSON.parse(after.body)).toMatchObject({ path: '/v1/after', host: 'api.sim.test:8443' });
      expect((await h2Get(session, { ':path': '/v1/still', ':authority': 'api.sim.test:8443' })).status).toBe(200);
    } finally {
      session.destroy();
    }
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.error === 'authority_mismatch')).toMatchObject({ decision: 'deny', status: 421, alpn: 'h2' });
  });

  it('HTTP/1.1: a Host of another host is refused (421), never followed; a non-canonical path is 400', async () => {
    const mismatch = await curl(['--http1.1', '-i', '-H', 'Host: other.sim.test', 'https://api.sim.test/v1/x']);
    expect(mismatch.stdout).toMatch(/^HTTP\/1\.1 421/m);
    const encoded = await curl(['--http1.1', '-i', '--path-as-is', 'https://api.sim.test/v1/a%2fb']);
    expect(encoded.stdout).toMatch(/^HTTP\/1\.1 400/m);
  });

  it('a ClientHello naming another host than the CONNECT is refused (handshake fails) and audited', async () => {
    await expect(tlsThroughTunnel('api.sim.test:443', 'other.sim.test', ['http/1.1'])).rejects.toThrow();
    expect(await proxy.waitForEvent((e) => e.error === 'sni_mismatch')).toMatchObject({ kind: 'connect', decision: 'deny', host: 'api.sim.test', server_name: 'other.sim.test' });
  });

  it('an upstream whose certificate is not trusted: 502 upstream_tls_error, with the OpenSSL code in the audit', async () => {
    const res = await curl(['--http1.1', '-i', 'https://untrusted.sim.test:8443/any']);
    expect(res.stdout).toMatch(/^HTTP\/1\.1 502/m);
    const body = JSON.parse(res.stdout.slice(res.stdout.indexOf('{')));
    expect(body.error).toBe('upstream_tls_error');
    const event = await proxy.waitForEvent((e) => e.kind === 'http' && e.host === 'untrusted.sim.test');
    expect(event).toMatchObject({ status: 502, error: 'upstream_tls_error', decision: 'allow' });
    expect(String(event.tls_error_code)).toMatch(/UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    // Nothing from the failed handshake is kept to resume: the next connection fails the same way.
    const again = await curl(['--http1.1', '-i', 'https://untrusted.sim.test:8443/again']);
    expect(again.stdout).toMatch(/^HTTP\/1\.1 502/m);
  });

  it('a client that does not trust the CA ends the handshake: tls_client_rejected with its alert', async () => {
    const res = await run('curl', ['-sS', '--max-time', '10', '-x', proxy.url, 'https://other.sim.test/']);
    expect(res.code).not.toBe(0);
    const event = await proxy.waitForEvent((e) => e.error === 'tls_client_rejected' && e.host === 'other.sim.test');
    expect(String(event.detail)).toContain('tls: passthrough');
    expect(event.alert).toMatch(/unknown ca|bad certificate/i);
  });
});

/** A WebSocket handshake and one text message over `socket`; resolves with the status line and the echoed text. */
function webSocketExchange(socket: tls.TLSSocket, path: string, host: string, message: string): Promise<{ status: number; echo: string | null }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let status = 0;
    const timer = setTimeout(() => finish(null), 10_000);
    const finish = (echo: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status, echo });
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (status === 0) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        status = Number(buf.toString('latin1', 9, 12));
        buf = buf.subarray(end + 4);
        if (status !== 101) return;
        const payload = Buffer.from(message);
        const mask = Buffer.from([1, 2, 3, 4]);
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]!)]));
      }
      if (status === 101 && buf.length >= 2 && buf.length >= 2 + buf[1]!) finish(buf.subarray(2, 2 + buf[1]!).toString());
    });
    socket.on('close', () => finish(null));
    socket.on('error', () => finish(null));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  });
}

describe('WebSocket and gRPC', () => {
  it('WebSocket: the upgrade request is decided; after 101 the frames are relayed both ways', async () => {
    const allowed = await webSocketExchange(await tlsThroughTunnel('api.sim.test:8443', 'api.sim.test', ['http/1.1']), '/v1/ws', 'api.sim.test:8443', 'ping');
    expect(allowed).toEqual({ status: 101, echo: 'echo: ping' });
    const denied = await webSocketExchange(await tlsThroughTunnel('api.sim.test:8443', 'api.sim.test', ['http/1.1']), '/v2/ws', 'api.sim.test:8443', 'ping');
    expect(denied).toEqual({ status: 403, echo: null });
    const event = await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/ws' && e.status === 101);
    expect(event.bytes_up).toBeGreaterThan(0);
    expect(event.bytes_down).toBeGreaterThan(0);
  });

  it('gRPC over h2 (@grpc/grpc-js client and server): a unary call and a server stream allowed by path, another service denied', async () => {
    const env = { ...process.env, grpc_proxy: proxy.url, https_proxy: proxy.url, no_grpc_proxy: '', no_proxy: '' };
    const res = await run(process.execPath, [join(import.meta.dirname, 'fixtures/inspect/grpc-client.mjs'), 'grpc.sim.test:50051', world.caFile], env);
    const out = JSON.parse(res.stdout);
    expect(out.say).toEqual({ reply: 'hello world' });
    expect(out.count).toEqual({ got: ['0', '1', '2', '3', '4'] });
    // 403 on the stream: gRPC's PERMISSION_DENIED.
    expect(out.drop.code).toBe(7);
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/test.Echo/Say')).toMatchObject({ decision: 'allow', status: 200, alpn: 'h2', method: 'POST' });
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/test.Admin/Drop')).toMatchObject({ decision: 'deny', status: 403 });
  });
});

describe('the SNI listener', () => {
  it('inspects a redirected connection as CONNECT does: h2 and HTTP/1.1, each request decided', async () => {
    const connectSni = (alpn: string[]): Promise<tls.TLSSocket> =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: proxy.sniPort, servername: 'api.sim.test', ALPNProtocols: alpn, ca: world.caPem }, () => resolve(s));
        s.once('error', reject);
      });
    const socket = await connectSni(['h2']);
    const session = http2.connect('https://api.sim.test', { createConnection: () => socket });
    try {
      const ok = await h2Get(session, { ':path': '/v1/sni', ':authority': 'api.sim.test' });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({ path: '/v1/sni', tls: true });
      expect((await h2Get(session, { ':path': '/v2/sni', ':authority': 'api.sim.test' })).status).toBe(403);
    } finally {
      session.destroy();
    }
    const h1 = await connectSni(['http/1.1']);
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      h1.on('data', (c: Buffer) => {
        text += c.toString();
        if (text.includes('"path"')) resolve(text);
      });
      h1.write('GET /v1/sni-h1 HTTP/1.1\r\nHost: api.sim.test\r\n\r\n');
    });
    h1.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(await proxy.waitForEvent((e) => e.kind === 'http' && e.path === '/v1/sni')).toMatchObject({ via: 'sni', tls: true, alpn: 'h2' });
    expect(await proxy.waitForEvent((e) => e.kind === 'sni' && e.host === 'api.sim.test')).toMatchObject({ inspect: true, decision: 'allow' });
  });
});

describe('policy changes and report-only', () => {
  it('a reload applies to the next request on an open inspected connection, and closes it when its host is no longer allowed', async () => {
    const file = join(world.dir, 'reload.yaml');
    writeFileSync(file, policyText(world.sim));
    const own = await startInspectingProxy(world, [], file);
    try {
      const tunnel = await openTunnel(own.port, 'api.sim.test:8443');
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: tunnel.socket, servername: 'api.sim.test', ALPNProtocols: ['h2'], ca: world.caPem }, () => resolve(s));
        s.once('error', reject);
      });
      const session = http2.connect('https://api.sim.test:8443', { createConnection: () => socket });
      const get = async (path: string): Promise<number> => (await h2Get(session, { ':path': path, ':authority': 'api.sim.test:8443' })).status;
      try {
        expect([await get('/v1/before'), await get('/v2/before')]).toEqual([200, 403]);
        writeFileSync(file, policyText(world.sim, '          - allow: { method: GET, path: "/v2/**" }'));
        await own.reload();
        expect([await get('/v1/after'), await get('/v2/after')]).toEqual([403, 200]);
        // A policy that no longer allows the host at all closes the inspected connection.
        const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
        writeFileSync(file, 'version: 1\nnetwork_policies: {}\n');
        await own.reload();
        await closed;
        expect(await own.waitForEvent((e) => e.kind === 'tunnel' && e.inspected === true && e.closed_by === 'policy_reload')).toMatchObject({ host: 'api.sim.test', port: 8443 });
      } finally {
        session.destroy();
      }
    } finally {
      await own.stop();
    }
  });

  it('the idle timeout ends an idle HTTP/2 connection, never one whose stream keeps flowing', async () => {
    const own = await startInspectingProxy(world, ['--idle-timeout', '1000']);
    try {
      const tunnel = await openTunnel(own.port, 'api.sim.test:8443');
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: tunnel.socket, servername: 'api.sim.test', ALPNProtocols: ['h2'], ca: world.caPem }, () => resolve(s));
        s.once('error', reject);
      });
      const session = http2.connect('https://api.sim.test:8443', { createConnection: () => socket });
      const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now())));
      // 3 s of a stream that sends every 200 ms: longer than the idle timeout, never idle.
      const drip = await h2Get(session, { ':path': '/v1/drip', ':authority': 'api.sim.test:8443' });
      expect(drip.status).toBe(200);
      expect(drip.body.trim().split('\n')).toHaveLength(15);
      const idleFrom = Date.now();
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 8000))]);
      expect(at).toBeGreaterThan(0);
      expect(at - idleFrom).toBeLessThan(5000);
      expect(await own.waitForEvent((e) => e.kind === 'tunnel' && e.inspected === true)).toMatchObject({ closed_by: 'idle', alpn: 'h2' });
    } finally {
      await own.stop();
    }
  });

  it('--report-only lets a would-deny request through, recorded as audit', async () => {
    const own = await startInspectingProxy(world, ['--report-only']);
    try {
      const res = await run('curl', ['-sS', '--max-time', '15', '--cacert', world.caFile, '-x', own.url, 'https://api.sim.test/v2/reported']);
      expect(JSON.parse(res.stdout)).toMatchObject({ path: '/v2/reported' });
      const event = await own.waitForEvent((e) => e.kind === 'http' && e.path === '/v2/reported');
      expect(event).toMatchObject({ decision: 'audit', allow: true, status: 200 });
      expect(String(event.reason)).toMatch(/^report-only, would deny/);
    } finally {
      await own.stop();
    }
  });
});

describe('the CLI flags', () => {
  it('--ca-cert without --ca-key, and --upstream-ca without a CA, are usage errors', async () => {
    const { cli } = await import('./support/cli.js');
    const base = ['proxy', '--policy', world.policyFile, '--listen', '127.0.0.1:0', '--no-watch'];
    const half = await cli(...base, '--ca-cert', world.caFile);
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('--ca-cert and --ca-key go together');
    const upstreamOnly = await cli(...base, '--upstream-ca', world.caFile);
    expect(upstreamOnly.code).toBe(2);
    expect(upstreamOnly.stderr).toContain('--upstream-ca is for inspected connections');
  });
});

describe('fuzzing through the whole path (CONNECT, TLS)', () => {
  it('300 malformed HTTP/1.1 heads and 300 HTTP/2 frame sequences over inspected TLS: none reaches the upstream, the proxy serves on', async () => {
    const authority = 'api.sim.test:8443';
    const seen = async (): Promise<string[]> => JSON.parse((await curl(['--http1.1', `https://${authority}/v1/seen`])).stdout) as string[];
    const before = await seen();
    const rand = prng(0x3f3);
    const send = async (protocol: 'h1' | 'h2', bytes: Buffer): Promise<void> => {
      const socket = await tlsThroughTunnel(authority, 'api.sim.test', [protocol === 'h2' ? 'h2' : 'http/1.1']);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => socket.destroy(), 1500);
        socket.on('data', () => undefined);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.write(bytes);
        if (protocol === 'h2') setTimeout(() => socket.end(), 150);
      });
    };
    for (let batch = 0; batch < 300; batch += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, k) => send('h1', h1Case(rand, authority, batch + k))));
      await Promise.all(Array.from({ length: 20 }, (_, k) => send('h2', h2Case(rand, authority, batch + k))));
    }
    // The policy here allows /v1/** only: every /ok/ and /denied/ request of the fuzz is refused.
    expect((await seen()).slice(before.length)).toEqual([]);
    const ok = await curl(['--http1.1', `https://${authority}/v1/after-fuzz`]);
    expect(JSON.parse(ok.stdout)).toMatchObject({ path: '/v1/after-fuzz' });
    // The list does see what is forwarded.
    expect((await seen()).slice(before.length)).toEqual(['/v1/after-fuzz']);
  }, 120_000);
});
