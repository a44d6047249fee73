// The audit sink: JSON lines to a file or stdout. emit() never blocks the caller (the relay
// path); lines queue in memory and drain in order. close() resolves once everything queued has
// been written, so a clean shutdown loses nothing.
// Lines are written in batches, FLUSH_DELAY_MS after the first line of a batch (or at once when
// a batch grows past FLUSH_BYTES): a write per event meant a thread-pool write and a wake-up of
// the event loop per event, and on a busy machine those wake-ups were the slowest tunnel
// set-ups (p99 2.2–3.5 ms with a write per event, under 1 ms without writes).
//
// Two states: writing, and failing (a write failed: disk full, file unreachable). While failing,
// what was already queued is held, new events are counted as lost (memory stays bounded), and
// writing is tried again every RETRY_MS; once it works, the held lines are written, then an
// `audit_gap` event with the count and the time span. healthy() lets the proxy refuse new
// connections meanwhile.
import { auditLine, type AuditEvent } from './events.js';
import { AuditFile } from './file.js';
import { AuditOutage } from './outage.js';
import { AuditWriteError, DiscardTarget, PIPE_BUF, StreamTarget, type AuditTarget } from './target.js';

const FLUSH_DELAY_MS = 20;
const FLUSH_BYTES = 256 * 1024;
/** While failing, how often writing is tried again. */
const RETRY_MS = 250;
const NOTHING = Buffer.alloc(0);

/** What the proxy does with new connections while events cannot be written. */
export type AuditFailureMode = 'closed' | 'open';

export interface AuditSink {
  emit(event: AuditEvent): void;
  /** False while events cannot be written (they are counted as lost until writing works again). */
  healthy(): boolean;
  close(): Promise<void>;
}

/** The sink's state, for the operator: failing since when and why, and what was lost. */
export interface AuditHealth {
  healthy: boolean;
  /** Failing: the error code (ENOSPC, EACCES, ELOOP, …) and its message. */
  cause?: string;
  detail?: string;
  /** Events lost in the current (or, once healthy again, the last) failure, and since when. */
  lost?: number;
  since?: Date;
}

function asWriteError(err: unknown): AuditWriteError {
  return err instanceof AuditWriteError ? err : new AuditWriteError(err as NodeJS.ErrnoException, 0);
}

export class StreamAuditSink implements AuditSink {
  private queue: string[] = [];
  private queuedBytes = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private writing = false;
  private closed = false;
  /** Set by close(): what is queued is written at once, batch after batch. */
  private draining = false;
  private drained: Array<() => void> = [];
  private listeners: Array<(event: AuditEvent) => void> = [];
  private healthListeners: Array<(health: AuditHealth) => void> = [];
  /** Set while failing. */
  private outage: AuditOutage | null = null;
  /** Lines accepted before the failure and not written yet: they go first on recovery. */
  private held: Buffer = NOTHING;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(private readonly target: AuditTarget) {}

  /** Also hand each event to `listener` (e.g. the summary of `portcullis run`). */
  onEvent(listener: (event: AuditEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Told when writing fails and when it works again. */
  onHealthChange(listener: (health: AuditHealth) => void): void {
    this.healthListeners.push(listener);
  }

  healthy(): boolean {
    return this.outage === null;
  }

  emit(event: AuditEvent): void {
    for (const listener of this.listeners) listener(event);
    if (this.closed) return;
    if (this.outage) {
      this.outage.lose();
      return;
    }
    const line = auditLine(event);
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (this.writing) return; // the running pump takes it
    if (this.queuedBytes >= FLUSH_BYTES) this.flushNow();
    else this.flushTimer ??= setTimeout(() => this.flushNow(), FLUSH_DELAY_MS);
  }

  /** Log rotation: the file is opened afresh before the next batch, at once when idle. */
  reopen(): void {
    if (!this.target.requestReopen || this.closed) return;
    this.target.requestReopen();
    this.flushNow();
  }

  private flushNow(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (!this.writing && !this.outage) void this.pump();
  }

  private takeQueue(): Buffer {
    const batch = this.queue.length === 0 ? NOTHING : Buffer.from(this.queue.splice(0).join(''));
    this.queuedBytes = 0;
    return batch;
  }

  /**
   * Writes a batch; what queued meanwhile waits for the next delay like any batch (a busy proxy
   * must not turn into a write per event again), unless it is already large or close() waits.
   */
  private async pump(): Promise<void> {
    this.writing = true;
    do {
      const batch = this.takeQueue();
      try {
        await this.target.write(batch);
      } catch (err) {
        this.fail(asWriteError(err), batch);
      }
    } while (this.queue.length > 0 && !this.outage && (this.draining || this.queuedBytes >= FLUSH_BYTES));
    this.writing = false;
    if (this.queue.length > 0 && !this.outage) this.flushTimer ??= setTimeout(() => this.flushNow(), FLUSH_DELAY_MS);
    this.settle();
  }

  /** Enters the failing state: the unwritten rest of the batch, and what queued behind it, wait. */
  private fail(err: AuditWriteError, batch: Buffer): void {
    this.held = Buffer.concat([batch.subarray(err.kept), this.takeQueue()]);
    this.outage = new AuditOutage(new Date(), err.code, err.message);
    this.retryTimer = setInterval(() => void this.retry(), RETRY_MS);
    this.retryTimer.unref();
    this.tell({ healthy: false, cause: err.code, detail: err.message, lost: 0, since: this.outage.since });
  }

  /** While failing: writes what is held, then the audit_gap event; if both work, writing resumes. */
  private async retry(): Promise<void> {
    const outage = this.outage;
    if (this.writing || !outage) return;
    this.writing = true;
    try {
      if (this.held.length > 0) {
        const held = this.held;
        await this.target.write(held).catch((err: unknown) => {
          this.held = held.subarray(asWriteError(err).kept);
          throw err;
        });
        this.held = NOTHING;
      }
      // A gap line that fails is not kept: the next try writes one with the count by then.
      await this.target.write(Buffer.from(auditLine(outage.gapEvent(new Date()))));
      this.recover(outage);
    } catch (err) {
      const failure = asWriteError(err);
      outage.cause = failure.code;
      outage.detail = failure.message;
    } finally {
      this.writing = false;
    }
    this.settle();
  }

  private recover(outage: AuditOutage): void {
    this.outage = null;
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.retryTimer = null;
    this.tell({ healthy: true, lost: outage.lost, since: outage.since });
  }

  private tell(health: AuditHealth): void {
    for (const listener of this.healthListeners) listener(health);
  }

  private settle(): void {
    if (!this.writing) for (const resolve of this.drained.splice(0)) resolve();
  }

  /** Writes what is queued (one more try if failing), then closes the target. */
  async close(): Promise<void> {
    this.draining = true;
    if (this.queue.length > 0) this.flushNow();
    while (this.writing) await new Promise<void>((resolve) => this.drained.push(resolve));
    if (this.outage) await this.retry();
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.retryTimer) clearInterval(this.retryTimer);
    await this.target.close();
  }

  /** The current state (for the operator at shutdown). */
  health(): AuditHealth {
    if (!this.outage) return { healthy: true };
    return { healthy: false, cause: this.outage.cause, detail: this.outage.detail, lost: this.outage.lost, since: this.outage.since };
  }
}

/**
 * `--audit FILE|-`: `-` is stdout; a file is appended to (see ./file.ts: AuditFileError when the
 * path cannot be the audit file). Undefined gives a sink that only calls its listeners.
 * `sharedStdout`: other processes write audit lines to the same stdout (proxy workers), so a
 * batch goes out in writes of at most PIPE_BUF bytes, which a pipe never interleaves. (A file
 * needs nothing more: every write to it is one call of whole lines, appended whole.)
 */
export function openAuditSink(target: string | undefined, options: { sharedStdout?: boolean } = {}): StreamAuditSink {
  if (target === undefined) return new StreamAuditSink(new DiscardTarget());
  if (target === '-') return new StreamAuditSink(new StreamTarget(process.stdout, false, options.sharedStdout ? PIPE_BUF : Infinity));
  return new StreamAuditSink(new AuditFile(target));
}
