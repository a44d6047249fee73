// What a forward HTTP request may carry, through the real proxy to a real upstream (the simulated
// internet, in a namespace of its own): a path that walks around a deny rule is refused with 400
// or decided in its canonical form, and the upstream receives exactly the path that was decided;
// a chunked body's trailers are checked as header fields; a head with a known defect gets the
// proxy's own refusal and nothing reaches an upstream.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { startProxy, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { rawExchange, waitForEvent } from './fixtures/proxy/harness.js';
import { DEFECT_MAX_HEAD, headDefects, headText, validHeadParts, type ExpectedAnswer } from './support/head-defects.js';

// A plain TCP echo upstream: whatever the proxy forwards comes back to the client as it was sent.
const ECHO_PORT = 7007;
const ECHO = `open.sim.test:${ECHO_PORT}`;

let sim: SimulatedInternet;
let dir: string;
let proxy: RunningProxy;
let sink: StreamAuditSink;
const events: AuditEvent[] = [];

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'rest.sim.test': {}, 'open.sim.test': {} }, extraPorts: [ECHO_PORT] });
  const h = sim.hosts['rest.sim.test']!;
  const o = sim.hosts['open.sim.test']!;
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
  open:
    endpoints:
      - { host: open.sim.test, ports: [80, ${ECHO_PORT}], allowed_ips: ["${o.v4}/32", "${o.v6}/128"] }
`,
  );
  sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  proxy = await startProxy({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    audit: sink,
    resolver: { host: sim.dns.address, port: sim.dns.port },
    limits: { maxHeaderBytes: DEFECT_MAX_HEAD },
  });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await sink?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const exchange = (text: string, timeoutMs?: number) => rawExchange(proxy.address.port, Buffer.from(text, 'latin1'), timeoutMs);
const get = (path: string) => exchange(`GET http://rest.sim.test${path} HTTP/1.1\r\nHost: rest.sim.test\r\n\r\n`);

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


describe('chunked trailers on forward HTTP', () => {
  // The echo never closes: what it sent back within a second is what was forwarded.
  const post = (trailer: string) =>
    exchange(`POST http://${ECHO}/upload HTTP/1.1\r\nHost: ${ECHO}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n${trailer}\r\n\r\n`, 1_000);

  it('a valid trailer goes upstream with the body, exactly', async () => {
    const res = await post('X-Checksum: 1234');
    expect(res.raw).toContain('POST /upload HTTP/1.1\r\n');
    expect(res.raw).toContain('5\r\nhello\r\n0\r\nX-Checksum: 1234\r\n\r\n');
  });

  it.each(['Content-Length: 0', 'Transfer-Encoding: chunked', 'Host: other.example', 'Connection: close', 'Proxy-Authorization: Basic eDp5', 'X Bad: 1', 'X: a\x00b', ' folded: 1'])(
    'a trailer %j is never forwarded: the request is cut',
    async (trailer) => {
      const res = await post(trailer);
      expect(res.closed).toBe(true);
      expect(res.raw).not.toContain(trailer);
      expect(res.raw).not.toContain('hello');
    },
  );
});

/** The proxy's own answer for a refused head: its error kind and status. */
function refusalOf(expected: ExpectedAnswer): { status: number; error: string } {
  if (expected.stage === 'target') return { status: 400, error: 'bad_request' };
  if (expected.stage !== 'head' && expected.stage !== 'framing') throw new Error(`not a refusal: ${expected.stage}`);
  if (expected.code === 431) return { status: 431, error: 'headers_too_large' };
  if (expected.code === 501) return { status: 501, error: 'not_implemented' };
  return { status: 400, error: 'bad_request' };
}

describe('forward heads with a known defect (fuzzing through the real proxy)', () => {
  it('a valid head reaches the upstream with its path (the control)', async () => {
    await fc.assert(
      fc.asyncProperty(validHeadParts('open.sim.test', ['GET']), async (h) => {
        const res = await exchange(headText(h));
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body)).toMatchObject({ host: 'open.sim.test', method: 'GET', path: h.path });
      }),
      { numRuns: 20 },
    );
  });

  it('300 defective heads each get the proxy\'s own refusal, and no byte reaches the (echo) upstream', async () => {
    const before = proxy.stats();
    const eventsBefore = events.length;
    await fc.assert(
      fc.asyncProperty(headDefects(ECHO), async (d) => {
        const res = await exchange(d.text);
        const { status, error } = refusalOf(d.expected);
        expect(res.status, d.name).toBe(status);
        // One answer, the proxy's: an echo of anything forwarded would follow it.
        expect(res.raw.match(/HTTP\/1\.1 \d{3} /g), d.name).toHaveLength(1);
        expect(res.raw, d.name).not.toContain(d.text.slice(0, d.text.indexOf('\r\n')));
        const body = JSON.parse(res.body) as { error: string; detail: string };
        expect(body.error, d.name).toBe(error);
        if (d.expected.stage === 'target') expect(body.detail, d.name).toMatch(d.expected.pattern);
        else if (d.expected.stage === 'head' || d.expected.stage === 'framing') expect(body.detail, d.name).toBe(d.expected.message);
      }),
      { numRuns: 300 },
    );
    // Nothing was decided, so nothing was dialled (a dial needs an allow) or relayed.
    const after = proxy.stats();
    expect(after.allowed).toBe(before.allowed);
    expect(after.denied).toBe(before.denied);
    expect(events.slice(eventsBefore).filter((e) => e.kind === 'http')).toEqual([]);
  }, 120_000);
});
