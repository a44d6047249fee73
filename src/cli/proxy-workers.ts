// `portcullis proxy --workers N` (N > 1): the primary process. It checks everything the flags
// name exactly as the single process does (bad input exits 2 before anything is forked), writes
// the placeholder file, then runs N workers (./proxy-worker.ts) and proxies nothing itself.
// The workers share the listening sockets and accept on them directly (cluster's SCHED_NONE:
// the primary binds them once, so port 0 is one port for all, and the kernel spreads the
// connections); the primary only passes signals on, reports, and restarts workers that die.
//   SIGHUP, or the policy file changing: every worker reloads; the outcome is reported once.
//   SIGUSR1: every worker reopens the audit file.
//   SIGTERM, SIGINT: every worker stops (closes its connections, flushes its audit); then exit.
//   A worker that dies is started again, unless RESTART_LIMIT die within RESTART_WINDOW_MS:
//   then the rest are stopped and the primary exits 1.
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { seededPlaceholders } from '../credentials/placeholder.js';
import { watchPolicyFile } from '../proxy/policy-watch.js';
import type { HostPort } from '../proxy/server.js';
import { writePlaceholderFile } from './placeholder-file.js';
import { listeningLine, type ProxyCommandOptions } from './proxy-options.js';
import { listeningFacts, prepareProxy, type PreparedProxy } from './proxy-setup.js';
import { asFromWorker, WORKER_ENV, type FromWorker, type ToWorker, type WorkerStart } from './worker-protocol.js';
import { reloadReport, ReloadRound, type ReloadOutcome, type WorkerRef } from './worker-reloads.js';
import { RESTART_LIMIT, RESTART_WINDOW_MS, RestartBudget } from './worker-restarts.js';

/** How long a reload waits for the workers' answers (a reload takes milliseconds). */
const RELOAD_ANSWER_MS = 30_000;

interface ListenAt {
  listen: HostPort;
  sniListen?: HostPort | undefined;
}

interface Slot {
  /** The worker's number, from 1; its replacement takes the same. */
  index: number;
  worker: ClusterWorker | null;
  listening: boolean;
  /** Where its worker was told to listen. */
  at?: ListenAt;
}

function say(line: string): void {
  process.stderr.write(`portcullis proxy: ${line}\n`);
}

/** Sends, unless the worker's channel is already closed (it is exiting: its 'exit' follows). */
function tell(worker: ClusterWorker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message, () => undefined);
}

class Primary {
  private readonly slots: Slot[];
  private readonly bySlot = new Map<number, Slot>();
  private readonly budget = new RestartBudget();
  private readonly rounds = new Map<number, ReloadRound>();
  private nextRound = 1;
  private reloads: Promise<void> = Promise.resolve();
  /** Where the workers listen, from the first to say so (they share the sockets). */
  private address: HostPort | null = null;
  private sniAddress: HostPort | undefined;
  private announced = false;
  private stopping = false;
  private exitCode = 0;
  private watcher: { close(): void } = { close() {} };

  constructor(
    private readonly opts: ProxyCommandOptions,
    private readonly prepared: PreparedProxy,
    private readonly seed: Buffer,
  ) {
    this.slots = Array.from({ length: opts.workers }, (_, i) => ({ index: i + 1, worker: null, listening: false }));
  }

  start(): void {
    // Before the first fork: each worker accepts on the shared sockets itself.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.on('message', (worker, message) => this.onMessage(worker, asFromWorker(message)));
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
    for (const slot of this.slots) this.fork(slot);
    const reload = (): void => this.reload();
    const file = this.prepared.source.watchFile;
    if (this.opts.watch && file !== undefined) this.watcher = watchPolicyFile(file, reload);
    process.on('SIGHUP', reload);
    process.on('SIGUSR1', () => this.everyListening((w) => tell(w, { kind: 'reopen' })));
    process.on('SIGTERM', () => this.stop(0));
    process.on('SIGINT', () => this.stop(0));
  }

  private fork(slot: Slot): void {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.index) });
    // A send to a worker that just died reports here; its 'exit' is what counts.
    worker.on('error', () => undefined);
    slot.worker = worker;
    slot.listening = false;
    this.bySlot.set(worker.id, slot);
  }

  private onMessage(worker: ClusterWorker, message: FromWorker | null): void {
    const slot = this.bySlot.get(worker.id);
    if (!slot || !message) return;
    if (message.kind === 'ready') return tell(worker, this.stopping ? { kind: 'stop' } : this.startFor(slot));
    if (message.kind === 'reloaded') return this.rounds.get(message.id)?.answer(worker.id, message);
    slot.listening = true;
    if (this.stopping) return tell(worker, { kind: 'stop' });
    if (this.announced) return say(`worker ${slot.index} (pid ${worker.process.pid}) serves`);
    this.address ??= message.address;
    this.sniAddress ??= message.sniAddress;
    if (this.slots.every((s) => s.listening)) {
      this.announced = true;
      process.stderr.write(listeningLine({ ...listeningFacts(this.prepared, this.opts, this.address, this.sniAddress), workers: this.slots.length }));
    }
  }

  /**
   * Where a worker listens: at first as the flags say; later as a worker that listens was told,
   * so that it joins the sockets that one holds (cluster shares a socket by the address asked
   * for, `127.0.0.1:0` included); with none left holding them, at the ports the proxy has shown,
   * so that a port the system chose stays the proxy's.
   */
  private startFor(slot: Slot): WorkerStart {
    const holder = this.slots.find((s) => s !== slot && s.listening && s.at !== undefined);
    const shown = this.address ? { listen: this.address, sniListen: this.sniAddress } : undefined;
    const at = holder?.at ?? shown ?? { listen: this.opts.listen, sniListen: this.opts.sniListen };
    slot.at = at;
    return { kind: 'start', placeholderSeed: this.seed.toString('hex'), listen: at.listen, ...(at.sniListen ? { sniListen: at.sniListen } : {}) };
  }

  private onExit(worker: ClusterWorker, code: number | null, signal: string | null): void {
    const slot = this.bySlot.get(worker.id);
    this.bySlot.delete(worker.id);
    for (const round of this.rounds.values()) round.gone(worker.id);
    if (!slot) return;
    const served = slot.listening;
    slot.worker = null;
    slot.listening = false;
    if (this.stopping) {
      if (code !== 0) this.exitCode = 1;
      return this.exitWhenAllGone();
    }
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (!this.announced) {
      say(`worker ${slot.index} (pid ${worker.process.pid}) ended (${how}) before the proxy served; stopping`);
      return this.stop(1);
    }
    this.replace(slot, worker.process.pid, !served && code === 2, how);
  }

  /**
   * A worker ended while the proxy serves: another takes its place, within the restart budget.
   * `refused`: a replacement exited 2 at its start, refusing what the flags name as it is now
   * (the policy file edited into one a reload refused, say): the others serve on, and the next
   * reload starts it again.
   */
  private replace(slot: Slot, pid: number | undefined, refused: boolean, how: string): void {
    if (refused) {
      if (this.slots.some((s) => s.worker !== null)) return say(`worker ${slot.index} (pid ${pid}) could not start (said above); it is started again at the next reload`);
      say(`worker ${slot.index} (pid ${pid}) could not start (said above), and no other worker serves; stopping`);
      return this.stop(1);
    }
    if (!this.budget.allowsRestart(Date.now())) {
      say(`worker ${slot.index} (pid ${pid}) died (${how}): ${RESTART_LIMIT} deaths within ${RESTART_WINDOW_MS / 1000} s, stopping`);
      return this.stop(1);
    }
    say(`worker ${slot.index} (pid ${pid}) died (${how}); starting another`);
    this.fork(slot);
  }

  private everyListening(act: (worker: ClusterWorker) => void): void {
    for (const slot of this.slots) if (slot.listening && slot.worker) act(slot.worker);
  }

  /** Reloads run one after another; each asks every serving worker and reports once. */
  private reload(): void {
    this.reloads = this.reloads.then(() => this.reloadOnce());
  }

  private async reloadOnce(): Promise<void> {
    // Workers still starting load the policy as it is now anyway.
    if (this.stopping || !this.announced) return;
    // A worker that could not start is tried again: it loads the policy as it is now.
    for (const slot of this.slots) if (slot.worker === null) this.fork(slot);
    const asked: WorkerRef[] = [];
    this.everyListening((w) => asked.push({ id: w.id, index: this.bySlot.get(w.id)!.index, pid: w.process.pid ?? 0 }));
    const id = this.nextRound++;
    let timer: NodeJS.Timeout | undefined;
    const outcomes = await new Promise<ReloadOutcome[]>((resolve) => {
      const round = new ReloadRound(id, asked, resolve);
      this.rounds.set(id, round);
      this.everyListening((w) => tell(w, { kind: 'reload', id }));
      // A worker that never answers must not hold up every later reload.
      timer = setTimeout(() => round.expire(), RELOAD_ANSWER_MS);
    });
    clearTimeout(timer);
    this.rounds.delete(id);
    if (outcomes.some((o) => o.result?.ok)) await this.rewritePlaceholders();
    process.stderr.write(reloadReport(outcomes));
  }

  /** The placeholder file after a reload (a credential may have been added): from the primary's own copy of the policy. */
  private async rewritePlaceholders(): Promise<void> {
    if (this.opts.placeholders === undefined) return;
    const { source } = this.prepared;
    try {
      await source.reload();
    } catch {
      return; // changed again meanwhile: the reload that change brings writes it
    }
    writePlaceholderFile(this.opts.placeholders, source.engine.credentials, false);
  }

  private stop(code: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.exitCode = code;
    this.watcher.close();
    for (const slot of this.slots) if (slot.worker) tell(slot.worker, { kind: 'stop' });
    this.exitWhenAllGone();
  }

  private exitWhenAllGone(): void {
    if (this.slots.some((s) => s.worker !== null)) return;
    void this.prepared.source.stop().finally(() => process.exit(this.exitCode));
  }
}

export async function serveWithWorkers(opts: ProxyCommandOptions): Promise<void> {
  if (opts.config !== undefined) {
    // One process polls a bundle service, sends decision logs and status: N of them would not.
    process.stderr.write('portcullis proxy: --workers above 1 does not go with --config (bundle services, decision logs and status are one process\'s work): use --workers 1, or --policy or --bundle\n');
    process.exit(2);
  }
  const seed = randomBytes(32);
  const prepared = await prepareProxy(opts, { label: 'proxy', placeholders: seededPlaceholders(seed) });
  // Checked, not kept: each worker opens the audit itself (O_APPEND, whole lines per write).
  await prepared.audit.close();
  if (opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, prepared.source.engine.credentials);
  new Primary(opts, prepared, seed).start();
}
