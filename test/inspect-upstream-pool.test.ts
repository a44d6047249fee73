// The pool of idle upstream connections of inspected requests (src/proxy/inspect/upstream-pool.ts),
// against a real HTTPS server on loopback that numbers its TLS connections: which requests may
// share a connection (the keying), when a connection is kept (a whole exchange, no
// `Connection: close`, not abandoned half-read), and that clearing the pool closes idle ones.
import https from 'node:https';
import type http from 'node:http';
import type net from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectedConnection } from '../src/proxy/inspect/connection.js';
import { h1Exchange, type H1Counted } from '../src/proxy/inspect/h1-upstream.js';
import { UpstreamLink } from '../src/proxy/inspect/upstream.js';
import { candidateKeys, poolKey, reachedAddress, UpstreamPool, type PoolLimits } from '../src/proxy/inspect/upstream-pool.js';
import { createCertificateAuthority } from '../src/sim/ca.js';
import { UpstreamTrust } from '../src/tls/upstream.js';

const HOST = 'pool.test';
/** The same server on 127.0.0.1 and 127.0.0.2 (one port): one host with two addresses. */
let servers: https.Server[] = [];
let port: number;
let caPem: string;
/** Live server-side connections by number. */
const open = new Map<number, net.Socket>();
let handshakes = 0;

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const socket = req.socket as net.Socket & { poolId: number; served: number };
  socket.served++;
  const body = JSON.stringify({ conn: socket.poolId, path: req.url });
  if (req.url === '/close') {
    res.writeHead(200, { connection: 'close', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  } else if (req.url === '/big') {
    // A body that never ends by itself: the client leaves in the middle of it.
    res.writeHead(200, { 'content-length': 10_000_000, 'x-conn': String(socket.poolId) });
    res.write(Buffer.alloc(65_536));
  } else if (req.url === '/drop-second' && socket.served > 1) {
    // As an upstream whose idle timeout ran out just as the request came.
    socket.destroy();
  } else {
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

beforeAll(async () => {
  const ca = await createCertificateAuthority('pool test CA');
  caPem = ca.certPem;
  const cert = await ca.issue([HOST, 'other.pool.test']);
  const options = { cert: cert.certPem, key: cert.keyPem, keepAliveTimeout: 60_000 };
  servers = [https.createServer(options, handle), https.createServer(options, handle)];
  for (const server of servers) {
    server.on('secureConnection', (socket: net.Socket & { poolId: number; served: number }) => {
      socket.poolId = ++handshakes;
      socket.served = 0;
      open.set(socket.poolId, socket);
      socket.once('close', () => open.delete(socket.poolId));
    });
  }
  await new Promise<void>((resolve) => servers[0]!.listen(0, '127.0.0.1', resolve));
  port = (servers[0]!.address() as net.AddressInfo).port;
  await new Promise<void>((resolve, reject) => servers[1]!.once('error', reject).listen(port, '127.0.0.2', resolve));
});

afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

interface Client {
  conn: InspectedConnection;
  link: UpstreamLink;
}

/** What an inspected client connection holds for its upstream side: a link over the shared pool. */
function client(pool: UpstreamPool, trust: UpstreamTrust, opts: { host?: string; addresses?: string[] } = {}): Client {
  const host = opts.host ?? HOST;
  const link = new UpstreamLink({ host, port, addresses: opts.addresses ?? ['127.0.0.1'], connectTimeoutMs: 5000, trust, pool, route: { via: 'direct' } });
  const conn = { upstream: link, tracked: { facts: { host, port } } } as unknown as InspectedConnection;
  return { conn, link };
}

interface Answer {
  status: number;
  conn: number;
  reused: boolean;
}

function get(c: Client, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const counted: H1Counted = { bytesUp: 0 };
    const out = { method: 'GET', authority: `${HOST}:${port}`, path, headers: {}, body: Readable.from([]), length: null };
    h1Exchange(c.conn, out, counted, {
      response(answer) {
        let body = '';
        answer.on('data', (chunk: Buffer) => (body += chunk.toString()));
        answer.on('end', () => resolve({ status: answer.statusCode ?? 0, conn: (JSON.parse(body) as { conn: number }).conn, reused: counted.reused === true }));
        answer.on('error', reject);
      },
      error: reject,
    });
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const limits = (over: Partial<PoolLimits> = {}): PoolLimits => ({ maxIdlePerKey: 4, maxIdleTotal: 8, idleTimeoutMs: 30_000, maxKeys: 16, ...over });

describe('keys', () => {
  it('a key holds host, port, the exact address, trust, protocol and route; an address is compared in canonical form', () => {
    const trust = new UpstreamTrust([], []);
    const base = { host: 'a.test', port: 443, address: '2001:db8::1', trust, alpn: 'http/1.1', route: 'direct' };
    const key = poolKey(base);
    expect(poolKey({ ...base, address: '2001:0db8:0:0:0:0:0:1' })).toBe(key);
    for (const other of [{ host: 'b.test' }, { port: 8443 }, { address: '2001:db8::2' }, { trust: new UpstreamTrust([], []) }, { alpn: 'h2' }, { route: 'proxy.test:3128' }]) {
      expect(poolKey({ ...base, ...other })).not.toBe(key);
    }
    expect(candidateKeys({ ...base, addresses: ['192.0.2.1', '2001:db8::1'] }).map((c) => c.address)).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(reachedAddress('2001:db8::1', '2001:0db8::1')).toBe(true);
    expect(reachedAddress('192.0.2.1', '192.0.2.2')).toBe(false);
    expect(reachedAddress('192.0.2.1', undefined)).toBe(false);
  });
});

describe('reuse', () => {
  it('a second client connection to the same host, address and trust takes the idle upstream connection', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const before = handshakes;
    const first = await get(client(pool, trust), '/a');
    const second = await get(client(pool, trust), '/b');
    expect(second.conn).toBe(first.conn);
    expect([first.reused, second.reused]).toEqual([false, true]);
    expect(handshakes - before).toBe(1);
    pool.clear();
  });

  it('another host, another checked address or another trust dials its own connection', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const first = await get(client(pool, trust), '/a');
    const otherHost = await get(client(pool, trust, { host: 'other.pool.test' }), '/b');
    // The server also answers on 127.0.0.2 (loopback): the same host on another checked address.
    const otherAddress = await get(client(pool, trust, { addresses: ['127.0.0.2'] }), '/c');
    const otherTrust = await get(client(pool, new UpstreamTrust([caPem], [])), '/d');
    const conns = [first.conn, otherHost.conn, otherAddress.conn, otherTrust.conn];
    expect(new Set(conns).size).toBe(4);
    // Each of them is pooled under its own key.
    expect((await get(client(pool, trust, { host: 'other.pool.test' }), '/e')).conn).toBe(otherHost.conn);
    expect((await get(client(pool, trust, { addresses: ['127.0.0.2'] }), '/f')).conn).toBe(otherAddress.conn);
    pool.clear();
  });

  it('a connection that reached a later checked address is not kept under the first one', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    // Nothing answers on 127.0.0.3: the dial falls over to 127.0.0.1.
    const first = await get(client(pool, trust, { addresses: ['127.0.0.3', '127.0.0.1'] }), '/a');
    await until('the connection to close after its exchange', () => !open.has(first.conn));
    expect(pool.idleCount()).toBe(0);
    pool.clear();
  });
});

describe('what is never kept', () => {
  it('a response with Connection: close', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const closing = await get(client(pool, trust), '/close');
    const next = await get(client(pool, trust), '/a');
    expect(next.conn).not.toBe(closing.conn);
    expect(next.reused).toBe(false);
    pool.clear();
  });

  it('a connection whose response the client abandoned half-read', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const c = client(pool, trust);
    const out = { method: 'GET', authority: `${HOST}:${port}`, path: '/big', headers: {}, body: Readable.from([]), length: null };
    let bigConn = 0;
    await new Promise<void>((resolve, reject) => {
      const abandon = h1Exchange(c.conn, out, { bytesUp: 0 }, {
        response(answer) {
          answer.once('data', () => {
            bigConn = Number(answer.headers['x-conn']);
            abandon();
            resolve();
          });
        },
        error: reject,
      });
    });
    await until('the abandoned connection to close', () => !open.has(bigConn));
    const next = await get(client(pool, trust), '/a');
    expect(next.conn).not.toBe(bigConn);
    pool.clear();
  });
});

describe('bounds and lifetime', () => {
  it('idle connections are bounded per key and in all', async () => {
    const pool = new UpstreamPool(limits({ maxIdlePerKey: 2, maxIdleTotal: 3 }));
    const trust = new UpstreamTrust([caPem], []);
    // Five concurrent requests to one key: five connections; two are kept.
    await Promise.all(Array.from({ length: 5 }, () => get(client(pool, trust), '/a')));
    await until('idle connections to settle', () => pool.idleCount() === 2);
    await Promise.all(Array.from({ length: 5 }, () => get(client(pool, trust, { host: 'other.pool.test' }), '/a')));
    await until('the total bound', () => pool.idleCount() === 3);
    pool.clear();
  });

  it('an idle connection is closed after the idle timeout', async () => {
    const pool = new UpstreamPool(limits({ idleTimeoutMs: 300 }));
    const first = await get(client(pool, new UpstreamTrust([caPem], [])), '/a');
    expect(open.has(first.conn)).toBe(true);
    await until('the idle connection to close', () => !open.has(first.conn), 3000);
    expect(pool.idleCount()).toBe(0);
  });

  it('clear() (reload, shutdown) closes idle connections and hands none out again', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const first = await get(client(pool, trust), '/a');
    pool.clear();
    await until('the idle connection to close', () => !open.has(first.conn));
    const next = await get(client(pool, trust), '/b');
    expect(next.conn).not.toBe(first.conn);
    pool.clear();
  });

  it('a request without a body that meets a reset on a pooled connection goes again on a new one', async () => {
    const pool = new UpstreamPool(limits());
    const trust = new UpstreamTrust([caPem], []);
    const first = await get(client(pool, trust), '/drop-second');
    const again = await get(client(pool, trust), '/drop-second');
    expect(again.status).toBe(200);
    expect(again.conn).not.toBe(first.conn);
    pool.clear();
  });
});
