// The tunnel's upstream-to-client path (src/proxy/downstream.ts) between real sockets on
// loopback: bytes that arrive before the relay starts, a bulk transfer into a client that reads
// slowly at first (queued chunks must keep their buffers), growing buffers, and the end.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Downstream } from '../src/proxy/downstream.js';

const sockets: net.Socket[] = [];
const servers: net.Server[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A server that runs `onClient` for its one client; resolves with its port. */
async function serve(onClient: (s: net.Socket) => void): Promise<number> {
  // A socket that queues a lot before write() says wait: queued chunks stay referenced while
  // reading goes on, so their buffers must not be read into again.
  const server = net.createServer({ allowHalfOpen: true, highWaterMark: 64 * 1024 * 1024 } as net.ServerOpts, (s) => {
    sockets.push(s);
    onClient(s);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A connected pair: the relay's end (`near`) and the client's end (`far`). */
async function pair(): Promise<{ near: net.Socket; far: net.Socket }> {
  let accepted!: (s: net.Socket) => void;
  const near = new Promise<net.Socket>((resolve) => (accepted = resolve));
  const port = await serve((s) => accepted(s));
  const far = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  sockets.push(far);
  return { near: await near, far };
}

function digest(chunks: Buffer[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

describe('Downstream', () => {
  it('keeps a banner that arrives before the relay starts, then passes a bulk transfer intact to a slow reader, then the end', async () => {
    const banner = Buffer.from('220 banner sent before the relay started\r\n');
    const payload = randomBytes(48 * 1024 * 1024);
    let upstreamSide!: net.Socket;
    const port = await serve((s) => {
      upstreamSide = s;
      s.write(banner);
      s.once('data', () => s.end(payload)); // the bulk only after the client has spoken
    });
    const downstream = new Downstream();
    const upstream = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, onread: downstream.onread });
    sockets.push(upstream);
    await new Promise((resolve) => upstream.once('connect', resolve));
    // Let the banner arrive with no relay attached.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(upstreamSide).toBeDefined();

    const { near, far } = await pair();
    const received: Buffer[] = [];
    far.pause(); // a client that does not read at first: the relay's writes queue up
    downstream.attach(upstream, near);
    upstream.write('go');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const ended = new Promise<void>((resolve) => far.once('end', resolve));
    far.on('data', (c: Buffer) => received.push(c));
    far.resume();
    await ended;

    const all = Buffer.concat(received);
    expect(all.length).toBe(banner.length + payload.length);
    expect(all.subarray(0, banner.length).equals(banner)).toBe(true);
    expect(digest([all.subarray(banner.length)])).toBe(digest([payload]));
    expect(upstream.bytesRead).toBe(banner.length + payload.length);
  }, 60_000);

  it('passes an end that came before the relay started', async () => {
    const port = await serve((s) => s.end('last words'));
    const downstream = new Downstream();
    const upstream = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, onread: downstream.onread });
    sockets.push(upstream);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { near, far } = await pair();
    const chunks: Buffer[] = [];
    far.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve) => far.once('end', resolve));
    downstream.attach(upstream, near);
    await ended;
    expect(Buffer.concat(chunks).toString()).toBe('last words');
  });
});
