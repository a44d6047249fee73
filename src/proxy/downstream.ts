// Bytes from the upstream to the client, read into buffers of our own (net's `onread`) instead
// of a fresh 64 KiB buffer per read that the garbage collector must then reclaim:
//   - a chunk the client's socket took at once leaves the buffer free, and the next read goes
//     into the same buffer;
//   - a chunk that waits in the client's queue keeps its buffer, and the next read gets a new one;
//   - a read that fills its buffer asks for one twice the size (up to 1 MiB), so a bulk
//     transfer moves in fewer, larger reads and writes;
//   - a read that did not fill its buffer, taken by the client at once, lets the buffer go: an
//     idle tunnel holds none (a thousand open tunnels would otherwise hold a thousand buffers),
//     and the next read gets a first-size one (2 KiB: a slice of Node's shared pool, not an
//     allocation of its own).
// Until the relay starts, what arrives is kept and reading pauses.
import type { Socket } from 'node:net';

const FIRST_BUFFER = 2 * 1024;
const LARGEST_BUFFER = 1024 * 1024;

export class Downstream {
  /** The buffer the next read goes into; none until a read comes, and none while idle. */
  private buffer: Buffer | null = null;
  /** The last chunk is still referenced (queued in the client's socket, or kept): read into a new buffer. */
  private retained = false;
  private filled = false;
  private early: Buffer[] = [];
  private source: Socket | null = null;
  private target: Socket | null = null;

  /** The `onread` option for the upstream socket's net.connect(). */
  readonly onread = {
    buffer: (): Buffer => this.nextBuffer(),
    callback: (bytes: number, buffer: Uint8Array): boolean => this.received(Buffer.from(buffer.buffer, buffer.byteOffset, bytes)),
  };

  /** Starts passing the upstream's bytes to the client (with backpressure, and its end as the client's end). */
  attach(source: Socket, target: Socket): void {
    this.source = source;
    this.target = target;
    let flowing = true;
    for (const chunk of this.early) flowing = target.write(chunk);
    this.early = [];
    if (source.readableEnded) target.end();
    else source.once('end', () => target.end());
    if (flowing) source.resume();
    else target.once('drain', () => source.resume());
  }

  private received(chunk: Buffer): boolean {
    this.filled = chunk.length === this.buffer?.length;
    const target = this.target;
    if (!target) {
      // Kept as it is (its buffer is not read into again); false stops reading until attach().
      this.early.push(chunk);
      this.retained = true;
      return false;
    }
    const ok = target.write(chunk);
    this.retained = target.writableLength > 0;
    if (!this.filled && !this.retained) this.buffer = null;
    if (ok) return true;
    const source = this.source!;
    source.pause();
    target.once('drain', () => source.resume());
    return false;
  }

  private nextBuffer(): Buffer {
    const current = this.buffer;
    if (current === null) this.buffer = Buffer.allocUnsafe(FIRST_BUFFER);
    else if (this.filled && current.length < LARGEST_BUFFER) this.buffer = Buffer.allocUnsafe(current.length * 2);
    else if (this.retained) this.buffer = Buffer.allocUnsafe(current.length);
    this.filled = false;
    this.retained = false;
    return this.buffer!;
  }
}
