// Where the audit sink's batches go: a file (./file.ts), a stream (stdout), or nowhere.
import type { Writable } from 'node:stream';

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

/** Writes to a stream it does not close (stdout) or does (`owned`). */
export class StreamTarget implements AuditTarget {
  constructor(
    private readonly stream: Writable,
    private readonly owned = false,
  ) {
    // A failed write rejects write() below; the stream's 'error' event must not kill the process.
    stream.on('error', () => undefined);
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stream.write(data, (err) => (err ? reject(new AuditWriteError(err, 0)) : resolve()));
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
