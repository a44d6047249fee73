// Keeps the engine on the newest good bundle from a bundle service, as OPA's bundle plugin does:
// GET with If-None-Match (304 = unchanged), long polling when the server speaks it, exponential
// backoff on errors, verification before activation, atomic activation, the last good bundle kept
// on any failure and persisted so a restart with the service down still enforces it. Until a
// first bundle is active the engine denies everything, saying why. I/O.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PolicyEngine } from '../engine/engine.js';
import type { BundleSourceConfig, KeyConfig, ServiceConfig } from './config.js';
import { readBundle } from './read.js';
import { requestService } from './service-client.js';
import type { VerificationOptions } from './signatures.js';

const LONG_POLL_TYPE = 'application/vnd.openpolicyagent.bundles';

export interface BundleStatus {
  name: string;
  active_revision?: string;
  last_request?: string;
  last_successful_request?: string;
  last_successful_download?: string;
  last_successful_activation?: string;
  code?: string;
  message?: string;
  errors?: string[];
  http_code?: number;
}

export interface BundlePullerOptions {
  bundle: BundleSourceConfig;
  service: ServiceConfig;
  keys: Record<string, KeyConfig>;
  engine: PolicyEngine;
  persistenceDirectory: string;
  /** Told after each attempt (status reporting, logs). */
  onStatus?: (status: BundleStatus) => void;
  onActivated?: (revision: string) => void;
}

function verificationFor(bundle: BundleSourceConfig, keys: Record<string, KeyConfig>): VerificationOptions | undefined {
  if (!bundle.signing && Object.keys(keys).length === 0) return undefined;
  const scope = bundle.signing?.scope ?? (bundle.signing?.keyId ? keys[bundle.signing.keyId]?.scope : undefined);
  return {
    keys: Object.fromEntries(Object.entries(keys).map(([id, k]) => [id, { algorithm: k.algorithm, key: k.key }])),
    ...(bundle.signing?.keyId !== undefined ? { keyId: bundle.signing.keyId } : {}),
    ...(scope !== undefined ? { scope } : {}),
    excludeFiles: bundle.signing?.excludeFiles ?? [],
  };
}

export class BundlePuller {
  readonly status: BundleStatus;
  private etag: string | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private inFlight: Promise<void> | undefined;
  private readonly aborter = new AbortController();

  constructor(private readonly opts: BundlePullerOptions) {
    this.status = { name: opts.bundle.name };
  }

  private get persistedFile(): string {
    return join(this.opts.persistenceDirectory, 'bundles', this.opts.bundle.name, 'bundle.tar.gz');
  }

  /** Activates a persisted bundle (if any and `persist` is on), then starts polling. */
  async start(): Promise<void> {
    if (this.opts.bundle.persist) {
      const kept = await readFile(this.persistedFile).catch(() => undefined);
      if (kept) await this.activate(kept, 'persisted').catch((err: unknown) => this.fail(`persisted bundle refused: ${(err as Error).message}`));
    }
    this.schedule(0);
  }

  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.aborter.abort();
    return this.inFlight ?? Promise.resolve();
  }

  /** One download attempt now (tests, SIGHUP). */
  pollNow(): Promise<void> {
    clearTimeout(this.timer);
    return (this.inFlight ??= this.poll().finally(() => (this.inFlight = undefined)));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pollNow(), delayMs);
  }

  private nextDelayMs(longPolled: boolean): number {
    const { minDelaySeconds, maxDelaySeconds } = this.opts.bundle;
    if (this.failures > 0) return Math.min(maxDelaySeconds, minDelaySeconds * 2 ** Math.min(this.failures - 1, 10)) * 1000;
    if (longPolled) return 0;
    return (minDelaySeconds + Math.random() * (maxDelaySeconds - minDelaySeconds)) * 1000;
  }

  private async poll(): Promise<void> {
    const { bundle, service } = this.opts;
    const wait = bundle.longPollingTimeoutSeconds;
    const headers: Record<string, string> = {};
    if (this.etag !== undefined) headers['if-none-match'] = this.etag;
    if (wait !== undefined) headers.prefer = `modes=snapshot;wait=${wait}`;
    this.status.last_request = new Date().toISOString();
    let longPolled = false;
    try {
      const res = await requestService(service, { method: 'GET', resource: bundle.resource, headers, timeoutMs: ((wait ?? 0) + 30) * 1000, maxBytes: bundle.sizeLimitBytes, signal: this.aborter.signal });
      this.status.http_code = res.status;
      longPolled = wait !== undefined && String(res.headers['content-type'] ?? '').startsWith(LONG_POLL_TYPE);
      if (res.status === 304) {
        this.succeeded();
      } else if (res.status === 200) {
        this.status.last_successful_download = new Date().toISOString();
        await this.activate(res.body, 'downloaded');
        const etag = res.headers.etag;
        this.etag = typeof etag === 'string' ? etag : undefined;
        if (bundle.persist) await this.persist(res.body);
        this.succeeded();
      } else {
        throw new Error(`bundle server answered ${res.status} for ${bundle.resource}`);
      }
    } catch (err) {
      this.fail((err as Error).message);
    }
    this.opts.onStatus?.({ ...this.status });
    this.schedule(this.nextDelayMs(longPolled));
  }

  private succeeded(): void {
    this.failures = 0;
    this.status.last_successful_request = new Date().toISOString();
    delete this.status.code;
    delete this.status.message;
    delete this.status.errors;
  }

  private fail(message: string): void {
    this.failures++;
    this.status.code = 'bundle_error';
    this.status.message = message;
    this.status.errors = [message];
  }

  private async activate(gz: Buffer, how: string): Promise<void> {
    const contents = await readBundle(gz, verificationFor(this.opts.bundle, this.opts.keys), { maxBytes: this.opts.bundle.sizeLimitBytes, maxFiles: 10_000 });
    await this.opts.engine.replaceWasm(contents.wasm, contents.data, `bundle ${this.opts.bundle.name} revision ${contents.revision} (${how})`);
    this.status.active_revision = contents.revision;
    this.status.last_successful_activation = new Date().toISOString();
    this.opts.onActivated?.(contents.revision);
  }

  private async persist(gz: Buffer): Promise<void> {
    const file = this.persistedFile;
    await mkdir(join(file, '..'), { recursive: true, mode: 0o700 });
    const partial = `${file}.${process.pid}.tmp`;
    await writeFile(partial, gz, { mode: 0o600 });
    await rename(partial, file);
  }
}
