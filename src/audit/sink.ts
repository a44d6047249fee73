// The audit sink: JSON lines to a file or stdout. emit() never blocks the caller (the relay
// path); lines queue in memory and drain in order. close() resolves once everything queued has
// been written, so a clean shutdown loses nothing.
import { createWriteStream, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';
import { auditLine, type AuditEvent } from './events.js';

export interface AuditSink {
  emit(event: AuditEvent): void;
  close(): Promise<void>;
}

export class StreamAuditSink implements AuditSink {
  private queue: string[] = [];
  private writing = false;
  private closed = false;
  private drained: Array<() => void> = [];
  private listeners: Array<(event: AuditEvent) => void> = [];

  constructor(
    private readonly stream: Writable,
    private readonly ownsStream: boolean,
  ) {}

  /** Also hand each event to `listener` (e.g. the summary of `portcullis run`). */
  onEvent(listener: (event: AuditEvent) => void): void {
    this.listeners.push(listener);
  }

  emit(event: AuditEvent): void {
    for (const listener of this.listeners) listener(event);
    if (this.closed) return;
    this.queue.push(auditLine(event));
    if (!this.writing) this.pump();
  }

  private pump(): void {
    this.writing = true;
    while (this.queue.length > 0) {
      const chunk = this.queue.splice(0, this.queue.length).join('');
      if (!this.stream.write(chunk)) {
        this.stream.once('drain', () => this.pump());
        return;
      }
    }
    this.writing = false;
    for (const resolve of this.drained.splice(0)) resolve();
  }

  async close(): Promise<void> {
    if (this.writing || this.queue.length > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
    this.closed = true;
    if (this.ownsStream) {
      await new Promise<void>((resolve) => (this.stream as WriteStream).end(resolve));
    }
  }
}

/** A stream that discards what it is given: the sink when no --audit is set. */
class DiscardStream extends Writable {
  override _write(_chunk: unknown, _encoding: BufferEncoding, done: () => void): void {
    done();
  }
}

/** `--audit FILE|-`: `-` is stdout; a file is appended to. Undefined gives a null sink. */
export function openAuditSink(target: string | undefined): StreamAuditSink {
  if (target === undefined) return new StreamAuditSink(new DiscardStream(), false);
  if (target === '-') return new StreamAuditSink(process.stdout, false);
  return new StreamAuditSink(createWriteStream(target, { flags: 'a' }), true);
}
