// The upstream proxy's pure parts (route, flags, credentials, CONNECT request and reply) and the
// dialer against a raw upstream-proxy peer on loopback: the 200 and the tunnel's first bytes in
// one segment, with and without a Downstream, and every failure mapped to its error kind.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dialRoute, type DialFailure, type DialedUpstream } from '../src/proxy/dialer.js';
import { Downstream } from '../src/proxy/downstream.js';
import { readUpstreamProxyAuthFile } from '../src/proxy/upstream-proxy-auth.js';
import {
  ConnectReplyReader,
  connectReplyRefusal,
  connectRequest,
  parseDirectHostPattern,
  parseUpstreamProxyCredentials,
  parseUpstreamProxyUrl,
  UpstreamRoutes,
  type UpstreamProxy,
} from '../src/proxy/upstream-proxy.js';
import { freePort } from './support/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-upstream-units-'));
const servers: net.Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('route', () => {
  const direct = ['intranet.example', '*.corp.example', '**.internal.example', '10.1.2.3', '2001:db8::1'].map((p) => {
    const parsed = parseDirectHostPattern(p);
    if (!parsed.ok) throw new Error(parsed.message);
    return parsed.pattern;
  });
  const routes = new UpstreamRoutes({ host: '127.0.0.1', port: 3128, direct });

  it('sends hosts through the upstream proxy unless a --no-upstream-proxy pattern names them', () => {
    expect(routes.routeFor('api.example.com').via).toBe('upstream_proxy');
    expect(routes.routeFor('intranet.example').via).toBe('direct');
    expect(routes.routeFor('a.intranet.example').via).toBe('upstream_proxy');
    expect(routes.routeFor('git.corp.example').via).toBe('direct');
    expect(routes.routeFor('a.git.corp.example').via).toBe('upstream_proxy');
    expect(routes.routeFor('a.b.internal.example').via).toBe('direct');
    expect(routes.routeFor('internal.example').via).toBe('upstream_proxy');
    expect(routes.routeFor('10.1.2.3').via).toBe('direct');
    expect(routes.routeFor('10.1.2.4').via).toBe('upstream_proxy');
    expect(routes.routeFor('2001:db8::1').via).toBe('direct');
  });

  it('is direct for everything without an upstream proxy', () => {
    expect(new UpstreamRoutes(undefined).routeFor('api.example.com').via).toBe('direct');
  });

  it('canonicalises patterns as the policy does and refuses what the policy refuses', () => {
    expect(parseDirectHostPattern('Intranet.Example.')).toEqual({ ok: true, pattern: 'intranet.example' });
    expect(parseDirectHostPattern('[2001:DB8::0:1]')).toEqual({ ok: true, pattern: '2001:db8::1' });
    expect(parseDirectHostPattern('*').ok).toBe(false);
    expect(parseDirectHostPattern('*.com').ok).toBe(false);
  });
});

describe('flags', () => {
  it('takes http://HOST:PORT only', () => {
    expect(parseUpstreamProxyUrl('http://proxy.corp.example:8080')).toEqual({ ok: true, host: 'proxy.corp.example', port: 8080 });
    expect(parseUpstreamProxyUrl('http://[::1]:3128')).toEqual({ ok: true, host: '::1', port: 3128 });
    expect(parseUpstreamProxyUrl('http://10.0.0.1')).toEqual({ ok: true, host: '10.0.0.1', port: 80 });
    expect(parseUpstreamProxyUrl('https://proxy:8443').ok).toBe(false);
    expect(parseUpstreamProxyUrl('http://proxy:3128/path').ok).toBe(false);
    expect(parseUpstreamProxyUrl('proxy:3128').ok).toBe(false);
    const withSecret = parseUpstreamProxyUrl('http://user:s3cret@proxy:3128');
    expect(withSecret.ok).toBe(false);
    expect(JSON.stringify(withSecret)).not.toContain('s3cret');
  });

  it('makes a Basic authorization of one user:password line, and never quotes it in an error', () => {
    expect(parseUpstreamProxyCredentials('alice:pa:ss word\n')).toEqual({ ok: true, authorization: `Basic ${Buffer.from('alice:pa:ss word').toString('base64')}` });
    for (const bad of ['', 'no-colon-s3cret\n', ':s3cret', 'a:b\nc:s3cret\n', 'a:s3\rcret']) {
      const parsed = parseUpstreamProxyCredentials(bad);
      expect(parsed.ok, JSON.stringify(bad)).toBe(false);
      expect(JSON.stringify(parsed)).not.toContain('s3');
    }
  });

  it('reads the credentials file only when others cannot read it', () => {
    const file = join(dir, 'auth');
    writeFileSync(file, 'alice:s3cret\n');
    chmodSync(file, 0o600);
    expect(readUpstreamProxyAuthFile(file)).toBe(`Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(file, mode);
      expect(() => readUpstreamProxyAuthFile(file)).toThrow(/readable by others/);
    }
    expect(() => readUpstreamProxyAuthFile(join(dir, 'missing'))).toThrow(/ENOENT/);
  });
});

describe('CONNECT request and reply', () => {
  it('asks for the decided host and port, with the credentials when configured', () => {
    expect(connectRequest('api.example.com', 443, undefined).toString()).toBe('CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n');
    expect(connectRequest('2001:db8::1', 443, 'Basic eA==').toString()).toBe('CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\nProxy-Authorization: Basic eA==\r\n\r\n');
  });

  it('reads the reply head across chunks and keeps the bytes after it', () => {
    const reader = new ConnectReplyReader();
    expect(reader.feed(Buffer.from('HTTP/1.1 200 Connection established\r'))).toEqual({ status: 'partial' });
    const done = reader.feed(Buffer.from('\nVia: x\r\n\r\nSSH-2.0-server\r\n'));
    expect(done).toMatchObject({ status: 'done', code: 200, reason: 'Connection established' });
    expect(done.status === 'done' && done.rest.toString()).toBe('SSH-2.0-server\r\n');
    expect(new ConnectReplyReader().feed(Buffer.from('SSH-2.0-x\r\n\r\n')).status).toBe('error');
    expect(new ConnectReplyReader().feed(Buffer.alloc(17 * 1024, 'a')).status).toBe('error');
  });

  it('maps the answer: 2xx opens, 407 is an authentication failure, anything else a refusal with its status', () => {
    const proxy: UpstreamProxy = { host: '127.0.0.1', port: 3128, authorization: 'Basic czNjcmV0' };
    expect(connectReplyRefusal(proxy, 200, 'OK', 'a:443')).toBeNull();
    const auth = connectReplyRefusal(proxy, 407, 'Proxy Authentication Required', 'a:443');
    expect(auth).toMatchObject({ kind: 'upstream_proxy_auth', upstreamProxyStatus: 407 });
    expect(auth!.detail).toContain('refused the credentials');
    expect(auth!.detail).not.toContain('czNjcmV0');
    expect(connectReplyRefusal({ host: '127.0.0.1', port: 3128 }, 407, '', 'a:443')!.detail).toContain('none are configured');
    expect(connectReplyRefusal(proxy, 403, 'Forbidden', 'a:443')).toMatchObject({ kind: 'upstream_proxy_refused', upstreamProxyStatus: 403 });
    expect(connectReplyRefusal(proxy, 503, 'Service Unavailable', 'a:443')!.detail).toContain('503 Service Unavailable');
  });
});

/** A raw upstream proxy: answers each connection's first bytes with `reply` (one write), records what it got. */
async function rawUpstreamProxy(reply: (request: string) => string | null): Promise<{ port: number; requests: string[] }> {
  const requests: string[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', (chunk) => {
      requests.push(chunk.toString('latin1'));
      const answer = reply(chunk.toString('latin1'));
      if (answer === null) socket.destroy();
      else socket.write(answer);
      socket.on('data', (more) => socket.write(`echo:${more.toString()}`));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, requests };
}

function readSome(socket: net.Socket, bytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`read ${JSON.stringify(got)}`)), 5_000);
    socket.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= bytes) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

const target = { host: 'api.example.com', port: 443, addresses: ['192.0.2.1'] };

describe('dialing through an upstream proxy', () => {
  it('hands the tunnel back with the bytes that came with the 200, without a Downstream', async () => {
    const peer = await rawUpstreamProxy(() => 'HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-far\r\n');
    const proxy: UpstreamProxy = { host: '127.0.0.1', port: peer.port, authorization: 'Basic YTpi' };
    const dialed = (await dialRoute({ via: 'upstream_proxy', proxy }, target, 'tunnel', 2_000)) as DialedUpstream;
    expect(dialed.socket).toBeInstanceOf(net.Socket);
    expect(peer.requests[0]).toBe('CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: Basic YTpi\r\n\r\n');
    const reading = readSome(dialed.socket, 'SSH-2.0-far\r\necho:hi'.length);
    dialed.socket.write('hi');
    expect(await reading).toBe('SSH-2.0-far\r\necho:hi');
    dialed.socket.destroy();
  });

  it('hands the tunnel back with the bytes that came with the 200, into a Downstream', async () => {
    const peer = await rawUpstreamProxy(() => 'HTTP/1.1 200 OK\r\n\r\nfirst-bytes');
    const downstream = new Downstream();
    const dialed = (await dialRoute({ via: 'upstream_proxy', proxy: { host: '127.0.0.1', port: peer.port } }, target, 'tunnel', 2_000, downstream)) as DialedUpstream;
    const [a, b] = await socketPair();
    downstream.attach(dialed.socket, a);
    const reading = readSome(b, 'first-bytesecho:x'.length);
    dialed.socket.write('x');
    expect(await reading).toBe('first-bytesecho:x');
    dialed.socket.destroy();
    a.destroy();
    b.destroy();
  });

  it('maps 407, 403, a closed connection, garbage, silence and a dead port to their kinds', async () => {
    const cases: Array<[(r: string) => string | null, string, number | undefined]> = [
      [() => 'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\n', 'upstream_proxy_auth', 407],
      [() => 'HTTP/1.0 403 Forbidden\r\n\r\n', 'upstream_proxy_refused', 403],
      [() => null, 'upstream_proxy_unreachable', undefined],
      [() => 'SSH-2.0-not-a-proxy\r\n\r\n', 'upstream_proxy_unreachable', undefined],
    ];
    for (const [reply, kind, status] of cases) {
      const peer = await rawUpstreamProxy(reply);
      const failure = (await dialRoute({ via: 'upstream_proxy', proxy: { host: '127.0.0.1', port: peer.port } }, target, 'tunnel', 2_000)) as DialFailure;
      expect(failure.kind).toBe(kind);
      expect(failure.upstreamProxyStatus).toBe(status);
    }
    const silent = await rawUpstreamProxy(() => '');
    const late = (await dialRoute({ via: 'upstream_proxy', proxy: { host: '127.0.0.1', port: silent.port } }, target, 'tunnel', 300)) as DialFailure;
    expect(late.kind).toBe('upstream_timeout');
    expect(late.detail).toContain('no answer to CONNECT within 300 ms');
    const dead = await freePort();
    const failure = (await dialRoute({ via: 'upstream_proxy', proxy: { host: '127.0.0.1', port: dead } }, target, 'tunnel', 2_000)) as DialFailure;
    expect(failure.kind).toBe('upstream_proxy_unreachable');
    expect(failure.detail).toContain('ECONNREFUSED');
  });

  it('for a forward request: dials the upstream proxy and says to write absolute form with its credentials', async () => {
    const peer = await rawUpstreamProxy(() => 'x');
    const proxy: UpstreamProxy = { host: '127.0.0.1', port: peer.port, authorization: 'Basic YTpi' };
    const dialed = (await dialRoute({ via: 'upstream_proxy', proxy }, target, 'request', 2_000)) as DialedUpstream;
    expect(dialed.absoluteForm).toEqual({ proxy });
    expect(dialed.socket.remotePort).toBe(peer.port);
    dialed.socket.destroy();
    const direct = await rawUpstreamProxy(() => 'x');
    const plain = (await dialRoute({ via: 'direct' }, { host: '127.0.0.1', port: direct.port, addresses: ['127.0.0.1'] }, 'request', 2_000)) as DialedUpstream;
    expect(plain.absoluteForm).toBeUndefined();
    plain.socket.destroy();
  });
});

function socketPair(): Promise<[net.Socket, net.Socket]> {
  return new Promise((resolve) => {
    const server = net.createServer((a) => {
      server.close();
      resolve([a, b]);
    });
    let b: net.Socket;
    server.listen(0, '127.0.0.1', () => (b = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')));
  });
}

