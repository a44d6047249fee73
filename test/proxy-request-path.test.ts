// Forward HTTP through the real proxy to a real upstream (the simulated internet, in a namespace
// of its own): a path that walks around a deny rule is refused with 400 or decided in its
// canonical form, and the upstream receives exactly the path that was decided.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { startProxy, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { rawExchange, waitForEvent } from './fixtures/proxy/harness.js';

let sim: SimulatedInternet;
let dir: string;
let proxy: RunningProxy;
let sink: StreamAuditSink;
const events: AuditEvent[] = [];

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'rest.sim.test': {} } });
  const h = sim.hosts['rest.sim.test']!;
  dir = mkdtempSync(join(tmpdir(), 'pc-path-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1
network_policies:
  rest:
    endpoints:
      - host: rest.sim.test
        port: 80
        allowed_ips: ["${h.v4}/32", "${h.v6}/128"]
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
`,
  );
  sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  proxy = await startProxy({ policyFile, listen: { host: '127.0.0.1', port: 0 }, audit: sink, resolver: { host: sim.dns.address, port: sim.dns.port } });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await sink?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = (path: string) => rawExchange(proxy.address.port, `GET http://rest.sim.test${path} HTTP/1.1\r\nHost: rest.sim.test\r\n\r\n`);

describe('forward HTTP request paths', () => {
  it.each([
    ['/v1/x/%2e%2e/admin/users', /encoded dot segment/],
    ['/v1/x/..;/admin/users', /";" path parameter/],
    ['/v1/x/..%2fadmin/users', /encoded "\/"/],
    ['/v1/a%5Cb', /encoded "\\"/],
    ['/v1/%C0%AE%C0%AE/admin/users', /UTF-8/],
    ['/v1/x%00', /control character/],
  ])('refuses %s with 400 before any decision or dial', async (path, why) => {
    const before = events.length;
    const res = await get(path);
    expect(res.status).toBe(400);
    const body = JSON.parse(res.body) as { error: string; detail: string };
    expect(body.error).toBe('bad_request');
    expect(body.detail).toMatch(why);
    // Refused while parsing: nothing decided, nothing dialled, nothing forwarded.
    expect(events.slice(before).filter((e) => e.kind === 'http' || e.kind === 'tunnel')).toEqual([]);
  });

  it('decides an encoded walk-around in its canonical form: %61dmin is the denied /v1/admin', async () => {
    const res = await get('/v1/%61dmin/users');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'policy_denied' });
    expect(await waitForEvent(events, (e) => e.kind === 'http' && e.decision === 'deny')).toMatchObject({ path: '/v1/admin/users' });
  });

  it('the upstream receives exactly the canonical path that was decided', async () => {
    const res = await get('/v1/%7e%75ser/./x//y/../z/caf%c3%a9/%7bid%7d?q=%2e%2e/..');
    expect(res.status).toBe(200);
    const canonical = '/v1/~user/x/z/caf%C3%A9/%7Bid%7D?q=%2e%2e/..';
    expect(JSON.parse(res.body)).toMatchObject({ host: 'rest.sim.test', method: 'GET', path: canonical });
    expect(await waitForEvent(events, (e) => e.kind === 'http' && e.decision === 'allow')).toMatchObject({ path: canonical });
  });
});
