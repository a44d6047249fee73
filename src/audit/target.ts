// Where the audit sink's batches go: a file (./file.ts), a stream (stdout), or nowhere.
import type { Writable } from 'node:stream';

/** The most a pipe takes in one write without interleaving it with another writer's (POSIX PIPE_BUF on Linux). */
export const PIPE_BUF = 4096;

export interface AuditTarget {
  /** Writes all of `data`, or rejects with an AuditWriteError saying how much of it was kept. */
  write(data: Buffer): Promise<void>;
  /** The next write goes to the target opened afresh (log rotation); optional. */
  requestReopen?(): void;
  close(): Promise<void>;
}

/** A failed write: `kept` bytes of the batch (whole lines) were written, the rest were not. */
export class AuditWriteError extends Error {
  readonly code: string;
  constructor(
    failure: NodeJS.ErrnoException,
    readonly kept: number,
  ) {
    super(failure.message);
    this.code = failure.code ?? 'EIO';
  }
}

/**
 * `data` (whole lines) cut into pieces of at most `max` bytes, each of whole lines; a line longer
 * than `max` is a piece of its own. Pure.
 */
export function linePieces(data: Buffer, max: number): Buffer[] {
  const pieces: Buffer[] = [];
  let start = 0;
  while (data.length - start > max) {
    // The last line end within the limit; failing that, the end of the first (over-long) line.
    let end = data.lastIndexOf(0x0a, start + max - 1) + 1;
    if (end <= start) end = data.indexOf(0x0a, start) + 1 || data.length;
    pieces.push(data.subarray(start, end));
    start = end;
  }
  if (start < data.length) pieces.push(data.subarray(start));
  return pieces;
}

/**
 * Writes to a stream it does not close (stdout) or does (`owned`). With `maxWrite`, a batch goes
 * out in pieces of whole lines of at most that many bytes, one write at a time: with several
 * processes on one pipe (proxy workers on stdout), a write of at most PIPE_BUF bytes is never
 * interleaved with another's, so their lines stay whole.
 */
export class StreamTarget implements AuditTarget {
  constructor(
    private readonly stream: Writable,
    private readonly owned = false,
    private readonly maxWrite = Infinity,
  ) {
    // A failed write rejects write() below; the stream's 'error' event must not kill the process.
    stream.on('error', () => undefined);
  }

  async write(data: Buffer): Promise<void> {
    if (data.length <= this.maxWrite) return this.writeOne(data, 0);
    let written = 0;
    for (const piece of linePieces(data, this.maxWrite)) {
      await this.writeOne(piece, written);
      written += piece.length;
    }
  }

  /** One write of `piece`; a failure says that the `before` bytes ahead of it were written. */
  private writeOne(piece: Buffer, before: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stream.write(piece, (err) => (err ? reject(new AuditWriteError(err, before)) : resolve()));
    });
  }

  close(): Promise<void> {
    if (!this.owned) return Promise.resolve();
    return new Promise((resolve) => this.stream.end(resolve));
  }
}

/** The target when no --audit is given: events reach only the sink's listeners. */
export class DiscardTarget implements AuditTarget {
  write(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
