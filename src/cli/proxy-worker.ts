// One worker of `portcullis proxy --workers N`: it asks the primary for its start (where to
// listen, the placeholder seed), checks and loads the flags' files as the single process does,
// serves on the listening sockets it shares with the other workers (accepting itself: the kernel
// spreads the connections), and tells the primary when it listens. From then on it acts on the
// primary's messages: reload, reopen the audit file, stop.
// Signals sent to the whole process group (Ctrl-C, a service manager's SIGTERM) reach the
// primary too, which passes them on: the worker itself ignores SIGHUP, SIGINT and SIGTERM, so
// each acts once. SIGUSR1 (reopen the audit file) is harmless twice and is taken directly too.
// If the primary dies, cluster ends the worker at once (the IPC channel closes).
import { seededPlaceholders } from '../credentials/placeholder.js';
import type { RunningProxy } from '../proxy/server.js';
import { reportUnwritten } from './audit-options.js';
import { limitsFrom, workerLimits, type ProxyCommandOptions } from './proxy-options.js';
import { prepareProxy, startPrepared, type PreparedProxy } from './proxy-setup.js';
import { asToWorker, type FromWorker, type ToWorker, type WorkerStart } from './worker-protocol.js';

function send(message: FromWorker): void {
  process.send?.(message);
}

class Worker {
  private prepared: PreparedProxy | null = null;
  private proxy: RunningProxy | null = null;
  private stopping = false;
  private stopAsked = false;
  private readonly label: string;

  constructor(
    private readonly opts: ProxyCommandOptions,
    index: number,
  ) {
    this.label = `proxy (worker ${index})`;
  }

  async serve(start: WorkerStart): Promise<void> {
    const placeholders = seededPlaceholders(Buffer.from(start.placeholderSeed, 'hex'));
    this.prepared = await prepareProxy(this.opts, { label: this.label, placeholders, sharedStdout: true });
    const limits = workerLimits(limitsFrom(this.opts), this.opts.workers);
    this.proxy = await startPrepared(this.prepared, this.opts, start, limits);
    if (this.stopAsked) return this.stop();
    this.prepared.source.onChange(() => this.proxy?.policyChanged());
    send({ kind: 'listening', address: this.proxy.address, ...(this.proxy.sniAddress ? { sniAddress: this.proxy.sniAddress } : {}) });
  }

  /** A message from the primary once started (the start itself is taken by startMessage()). */
  handle(message: ToWorker): void {
    if (message.kind === 'stop') return void this.stop();
    if (message.kind === 'reopen') return this.reopenAudit();
    if (message.kind !== 'reload') return;
    const { id } = message;
    if (!this.proxy) return send({ kind: 'reloaded', id, ok: false, error: 'this worker is still starting', closed: 0 });
    void this.proxy.reload().then((r) => send({ kind: 'reloaded', id, ok: r.ok, ...(r.error !== undefined ? { error: r.error } : {}), closed: r.closed }));
  }

  reopenAudit(): void {
    this.prepared?.audit.reopen();
  }

  /** Stops accepting, ends the connections, flushes the audit, exits 0; asked while starting, once started. */
  async stop(): Promise<void> {
    if (!this.proxy) {
      this.stopAsked = true;
      if (!this.prepared) process.exit(0);
      return;
    }
    if (this.stopping) return;
    this.stopping = true;
    const { source, audit } = this.prepared!;
    await this.proxy.close();
    await source.stop();
    await audit.close();
    reportUnwritten(audit, this.label);
    process.exit(0);
  }
}

/** Asks the primary for the start and waits for it; a stop that comes first ends the worker. */
function startMessage(): Promise<WorkerStart> {
  return new Promise((resolve) => {
    const onMessage = (raw: unknown): void => {
      const message = asToWorker(raw);
      if (message?.kind === 'stop') process.exit(0);
      if (message?.kind !== 'start') return;
      process.off('message', onMessage);
      resolve(message);
    };
    process.on('message', onMessage);
    send({ kind: 'ready' });
  });
}

export async function serveAsWorker(opts: ProxyCommandOptions, index: number): Promise<void> {
  const worker = new Worker(opts, index);
  for (const signal of ['SIGHUP', 'SIGINT', 'SIGTERM'] as const) process.on(signal, () => undefined);
  // A listener also keeps Node from taking SIGUSR1 as "start the inspector".
  process.on('SIGUSR1', () => worker.reopenAudit());
  const start = await startMessage();
  process.on('message', (raw: unknown) => {
    const message = asToWorker(raw);
    if (message) worker.handle(message);
  });
  await worker.serve(start);
}
