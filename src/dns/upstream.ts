// Talking to the upstream resolver (I/O). UDP queries share one socket, told apart by a random
// message id; only a datagram from the upstream's own address and port, with a pending id and
// the same question, is taken as an answer. TCP queries use a connection each.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomFillSync } from 'node:crypto';
import { matchResponse, tcpFrame } from './wire.js';

export interface UpstreamAddress {
  host: string;
  port: number;
}

export class UpstreamError extends Error {
  override name = 'UpstreamError';
}

interface Pending {
  question: Buffer;
  resolve: (message: Buffer) => void;
  reject: (err: Error) => void;
  /** When the query gives up (ms, performance.now()). */
  deadline: number;
}

const MAX_PENDING = 16_384;
/** How often timed-out queries are swept (one timer for all, not one per query). */
const SWEEP_MS = 50;

/** Random 16-bit message ids, drawn from a refilled pool (one syscall per 4,096 ids). */
class RandomIds {
  private pool = Buffer.alloc(8192);
  private at = this.pool.length;

  next(): number {
    if (this.at >= this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const id = this.pool.readUInt16BE(this.at);
    this.at += 2;
    return id;
  }
}
const MAX_TCP_RESPONSE = 65_535;

export class UdpUpstream {
  private readonly socket: dgram.Socket;
  /** In flight, oldest first (insertion order): the sweep stops at the first live one. */
  private readonly pending = new Map<number, Pending>();
  private readonly ids = new RandomIds();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly upstream: UpstreamAddress,
    private readonly timeoutMs: number,
  ) {
    this.socket = dgram.createSocket(net.isIPv6(upstream.host) ? 'udp6' : 'udp4');
    this.socket.on('message', (message, remote) => this.onMessage(message, remote));
    this.socket.on('error', () => undefined); // e.g. ICMP port unreachable: the query times out
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      p.reject(new UpstreamError(`upstream ${this.upstream.host}:${this.upstream.port} did not answer within ${this.timeoutMs} ms`));
    }
  }

  static async open(upstream: UpstreamAddress, timeoutMs: number): Promise<UdpUpstream> {
    const u = new UdpUpstream(upstream, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      u.socket.once('error', reject);
      // Connected: the kernel drops datagrams from anyone but the upstream, and sends need
      // no per-datagram address.
      u.socket.connect(upstream.port, upstream.host, () => {
        u.socket.off('error', reject);
        resolve();
      });
    });
    return u;
  }

  /** Sends a query built by `build(id)` and resolves with the matching response. */
  query(question: Buffer, build: (id: number) => Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamError('upstream socket is closed'));
    if (this.pending.size >= MAX_PENDING) return Promise.reject(new UpstreamError('too many queries in flight upstream'));
    let id = this.ids.next();
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { question, resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.socket.send(build(id), (err) => {
        if (!err) return;
        const p = this.pending.get(id);
        if (p === undefined) return;
        this.pending.delete(id);
        p.reject(new UpstreamError(`cannot send to upstream: ${err.message}`));
      });
    });
  }

  private onMessage(message: Buffer, remote: dgram.RemoteInfo): void {
    if (remote.port !== this.upstream.port || remote.address !== this.upstream.host || message.length < 12) return;
    const id = message.readUInt16BE(0);
    const p = this.pending.get(id);
    if (p === undefined || matchResponse(message, p.question) === null) return;
    this.pending.delete(id);
    p.resolve(message);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of this.pending.values()) {
      p.reject(new UpstreamError('upstream socket closed'));
    }
    this.pending.clear();
    this.socket.close();
  }
}

/** One query over its own TCP connection (RFC 1035 length-prefixed framing). */
export function tcpQuery(upstream: UpstreamAddress, question: Buffer, message: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ host: upstream.host, port: upstream.port });
    let buffered = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | null, response?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(response!);
    };
    const timer = setTimeout(
      () => finish(new UpstreamError(`upstream ${upstream.host}:${upstream.port} did not answer over TCP within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('error', (err) => finish(new UpstreamError(`upstream TCP: ${err.message}`)));
    socket.on('close', () => finish(new UpstreamError('upstream closed the TCP connection without an answer')));
    socket.on('connect', () => {
      socket.write(tcpFrame(message));
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > MAX_TCP_RESPONSE + 2) return finish(new UpstreamError('upstream TCP answer too large'));
      if (buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) return;
      const response = buffered.subarray(2, 2 + length);
      const expectedId = message.readUInt16BE(0);
      if (response.length < 12 || response.readUInt16BE(0) !== expectedId || matchResponse(response, question) === null) {
        return finish(new UpstreamError('upstream TCP answer does not match the query'));
      }
      finish(null, Buffer.from(response));
    });
  });
}
