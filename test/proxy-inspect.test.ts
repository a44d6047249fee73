// TLS inspection end to end: the real `portcullis proxy` with --ca-cert/--ca-key from
// `portcullis ca init`, real clients (curl HTTP/1.1 and --http2, Python, Node, a gRPC client,
// a WebSocket exchange) given the inspection CA, through CONNECT and the SNI listener, to HTTPS
// servers of the simulated internet (verified with --upstream-ca). Every request on an inspected
// connection is decided by method, path and authority, answered and audited on its own.
import http2 from 'node:http2';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTunnel, run } from './fixtures/proxy/harness.js';
import { startInspectingProxy, startWorld, type InspectingProxy, type InspectWorld } from './fixtures/inspect/env.js';

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
