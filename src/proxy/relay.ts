// Byte relay between a client and an upstream socket: both directions piped (backpressure),
// half-close passed on (a FIN one way leaves the other way open), byte counts, idle timeout.
import type { Socket } from 'node:net';
import type { Downstream } from './downstream.js';

// Relay buffers: a 64 KiB read fits a write without pausing the reader on every chunk.
export const RELAY_HIGH_WATER_MARK = 256 * 1024;

export type CloseCause = 'finished' | 'idle' | 'error' | 'policy_reload' | 'shutdown';

export interface RelayStats {
  bytesUp: number;
  bytesDown: number;
}

export class Relay {
  readonly stats: RelayStats = { bytesUp: 0, bytesDown: 0 };
  private cause: CloseCause = 'finished';
  private pending = 2;
  private done = false;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    /** Reads the upstream into buffers of its own (see downstream.ts); without one, a plain pipe. */
    downstream: Downstream | undefined,
    idleTimeoutMs: number,
    private readonly onClose: (cause: CloseCause, stats: RelayStats) => void,
  ) {
    // Counted from the upstream socket's own totals at close: no per-chunk callback on the hot path.
    upstream.once('close', () => {
      this.stats.bytesUp = upstream.bytesWritten;
      this.stats.bytesDown = upstream.bytesRead;
    });
    client.pipe(upstream);
    if (downstream) downstream.attach(upstream, client);
    else upstream.pipe(client);
    // The client socket sees traffic both ways (reads up, writes down): one timer covers both.
    client.setTimeout(idleTimeoutMs, () => this.stop('idle'));
    for (const socket of [client, upstream]) {
      socket.on('error', () => this.stop('error'));
      socket.once('close', () => this.closed());
    }
  }

  stop(cause: CloseCause): void {
    if (this.cause === 'finished') this.cause = cause;
    this.client.destroy();
    this.upstream.destroy();
  }

  private closed(): void {
    this.pending--;
    // One side gone for good (not a half-close): nothing more can flow, take the other down.
    if (this.pending === 1) {
      const other = this.client.destroyed ? this.upstream : this.client;
      if (other.writableFinished || other.writable === false) other.destroy();
      else other.end();
      other.setTimeout(5_000, () => other.destroy());
      return;
    }
    if (this.done) return;
    this.done = true;
    this.onClose(this.cause, this.stats);
  }
}
