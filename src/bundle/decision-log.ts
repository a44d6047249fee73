// Decision logs in OPA's event format, uploaded as gzip-compressed JSON arrays to the
// collector's /logs in chunks no larger than upload_size_limit_bytes, retried with backoff until
// the collector takes them. The buffer is bounded: past buffer_size_limit_bytes the oldest
// events are dropped and counted (reported in status). The local JSONL audit is separate. I/O.
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { DecisionObservation } from '../engine/engine.js';
import { ENTRYPOINT } from '../engine/opa-cli.js';
import type { DecisionLogConfig, ServiceConfig } from './config.js';
import { requestService } from './service-client.js';

export interface DecisionLogStatus {
  code?: string;
  message?: string;
  /** Events dropped because the buffer was full (or an event alone exceeded the upload size). */
  dropped: number;
  uploaded: number;
  buffered: number;
}

export interface DecisionLoggerOptions {
  config: DecisionLogConfig;
  service: ServiceConfig;
  /** `labels` of every event: id and version of this instance, plus the configured labels. */
  labels: Record<string, string>;
  /** The active bundles' revisions, read when an event is made. */
  bundles: () => Record<string, { revision: string }>;
  onStatus?: (status: DecisionLogStatus) => void;
}

/** Removes the values at JSON pointers under /input; returns the pointers that were present. */
export function erase(event: Record<string, unknown>, pointers: string[]): string[] {
  const erased: string[] = [];
  for (const pointer of pointers) {
    const path = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let node: unknown = event;
    for (const key of path.slice(0, -1)) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    const last = path[path.length - 1]!;
    if (node !== null && typeof node === 'object' && last in (node as object)) {
      delete (node as Record<string, unknown>)[last];
      erased.push(pointer);
    }
  }
  return erased;
}

/** Splits serialised events into gzip chunks of at most `limit` bytes; events that alone exceed it are returned apart. */
export function chunkEvents(events: string[], limit: number): { chunks: Array<{ body: Buffer; count: number }>; tooLarge: number } {
  const chunks: Array<{ body: Buffer; count: number }> = [];
  let tooLarge = 0;
  let start = 0;
  while (start < events.length) {
    let end = start;
    let bytes = 2;
    // Uncompressed text past the limit is usually still under it compressed; grow, then shrink to fit.
    while (end < events.length && bytes + events[end]!.length + 1 <= limit * 8) bytes += events[end++]!.length + 1;
    if (end === start) end = start + 1;
    for (;;) {
      const body = gzipSync(`[${events.slice(start, end).join(',')}]`);
      if (body.length <= limit) {
        chunks.push({ body, count: end - start });
        break;
      }
      if (end - start === 1) {
        tooLarge++;
        break;
      }
      end = start + Math.max(1, Math.floor((end - start) / 2));
    }
    start = end;
  }
  return { chunks, tooLarge };
}

export class DecisionLogger {
  private buffer: string[] = [];
  private bufferedBytes = 0;
  private readonly state: DecisionLogStatus = { dropped: 0, uploaded: 0, buffered: 0 };
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private uploading: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: DecisionLoggerOptions) {}

  start(): void {
    this.schedule();
  }

  /** Records one decision (called for every decision the engine makes). */
  record(observation: DecisionObservation, requestedBy: string): void {
    const event: Record<string, unknown> = {
      decision_id: randomUUID(),
      labels: this.opts.labels,
      bundles: this.opts.bundles(),
      path: ENTRYPOINT,
      // Erasing edits the event: then the caller's input must not be the one edited.
      input: this.opts.config.erase.length > 0 ? structuredClone(observation.input) : observation.input,
      result: observation.result,
      requested_by: requestedBy,
      timestamp: new Date().toISOString(),
      metrics: { timer_rego_query_eval_ns: observation.evalNs },
    };
    if (this.opts.config.erase.length > 0) {
      const erased = erase(event, this.opts.config.erase);
      if (erased.length > 0) event.erased = erased;
    }
    const line = JSON.stringify(event);
    this.buffer.push(line);
    this.bufferedBytes += line.length;
    while (this.bufferedBytes > this.opts.config.bufferSizeLimitBytes && this.buffer.length > 0) {
      this.bufferedBytes -= this.buffer.shift()!.length;
      this.state.dropped++;
    }
    this.state.buffered = this.buffer.length;
  }

  status(): DecisionLogStatus {
    return { ...this.state };
  }

  /** Uploads everything buffered now; resolves when done or failed (events stay on failure). */
  flush(): Promise<void> {
    return (this.uploading ??= this.upload().finally(() => (this.uploading = undefined)));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.flush();
  }

  private schedule(): void {
    if (this.stopped) return;
    const { minDelaySeconds, maxDelaySeconds } = this.opts.config;
    const delay = this.failures > 0 ? Math.min(maxDelaySeconds, minDelaySeconds * 2 ** Math.min(this.failures - 1, 10)) : minDelaySeconds + Math.random() * (maxDelaySeconds - minDelaySeconds);
    this.timer = setTimeout(() => void this.flush().then(() => this.schedule()), delay * 1000);
  }

  private async upload(): Promise<void> {
    if (this.buffer.length === 0) return;
    const taken = this.buffer.length;
    const { chunks, tooLarge } = chunkEvents(this.buffer.slice(0, taken), this.opts.config.uploadSizeLimitBytes);
    let sent = 0;
    try {
      for (const chunk of chunks) {
        const res = await requestService(this.opts.service, {
          method: 'POST',
          resource: this.opts.config.resource,
          headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
          body: chunk.body,
          timeoutMs: 30_000,
          maxBytes: 64 * 1024,
        });
        if (res.status < 200 || res.status > 299) throw new Error(`log collector answered ${res.status}`);
        sent += chunk.count;
        this.state.uploaded += chunk.count;
      }
      this.failures = 0;
      delete this.state.code;
      delete this.state.message;
    } catch (err) {
      this.failures++;
      this.state.code = 'decision_log_upload_failed';
      this.state.message = (err as Error).message;
    }
    // Sent events (and those too large ever to send) leave the buffer; the rest wait for the next try.
    const done = sent === chunks.reduce((n, c) => n + c.count, 0) ? taken : sent;
    if (done === taken) this.state.dropped += tooLarge;
    for (const line of this.buffer.splice(0, done)) this.bufferedBytes -= line.length;
    this.state.buffered = this.buffer.length;
    this.opts.onStatus?.(this.status());
  }
}
