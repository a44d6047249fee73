// One reload across the workers of `portcullis proxy --workers N`: every worker running when it
// was asked answers (or exits first), then the outcome is reported once: one line when they all
// agree, as the single process says it, else a line per worker. Pure bookkeeping.
import type { WorkerReloaded } from './worker-protocol.js';

export interface WorkerRef {
  /** cluster's id of the worker process (a restarted worker has a new one). */
  id: number;
  /** The worker's number, from 1 (a restarted worker keeps the number of the one it replaces). */
  index: number;
  pid: number;
}

export interface ReloadOutcome extends WorkerRef {
  /** Null: the worker exited, or did not answer in time. */
  result: WorkerReloaded | null;
}

export class ReloadRound {
  private readonly waiting = new Map<number, WorkerRef>();
  private readonly outcomes: ReloadOutcome[] = [];

  constructor(
    readonly id: number,
    workers: WorkerRef[],
    private readonly done: (outcomes: ReloadOutcome[]) => void,
  ) {
    for (const w of workers) this.waiting.set(w.id, w);
    this.settle();
  }

  answer(workerId: number, result: WorkerReloaded): void {
    this.take(workerId, result);
  }

  /** The worker exited: it will not answer. */
  gone(workerId: number): void {
    this.take(workerId, null);
  }

  /** Time is up: those that have not answered are reported as such. */
  expire(): void {
    for (const workerId of [...this.waiting.keys()]) this.take(workerId, null);
  }

  private take(workerId: number, result: WorkerReloaded | null): void {
    const worker = this.waiting.get(workerId);
    if (!worker) return;
    this.waiting.delete(workerId);
    this.outcomes.push({ ...worker, result });
    this.settle();
  }

  private settle(): void {
    if (this.waiting.size === 0) this.done([...this.outcomes].sort((a, b) => a.index - b.index));
  }
}

function refused(error: string | undefined): string {
  return `reload refused, previous policy stays:\n${error ?? ''}`;
}

function workerLine(o: ReloadOutcome): string {
  if (!o.result) return `worker ${o.index} (pid ${o.pid}) did not answer (it exited, or is stuck)`;
  return `worker ${o.index}: ${o.result.ok ? `policy reloaded (${o.result.closed} connection(s) closed)` : refused(o.result.error)}`;
}

/** What stderr says about a reload: once when every worker did the same, else per worker. */
export function reloadReport(outcomes: ReloadOutcome[]): string {
  const first = outcomes[0]?.result;
  if (outcomes.length === 0) return 'portcullis proxy: no worker is running to reload\n';
  const same = first && outcomes.every((o) => o.result && o.result.ok === first.ok && o.result.error === first.error);
  if (!same) return outcomes.map((o) => `portcullis proxy: ${workerLine(o)}\n`).join('');
  if (!first.ok) return `portcullis proxy: ${refused(first.error)}\n`;
  const closed = outcomes.reduce((sum, o) => sum + (o.result?.closed ?? 0), 0);
  return `portcullis proxy: policy reloaded in ${outcomes.length} worker${outcomes.length === 1 ? '' : 's'} (${closed} connection(s) closed)\n`;
}
