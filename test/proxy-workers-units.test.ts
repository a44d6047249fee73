// The pure parts of `portcullis proxy --workers N`: the count, each worker's share of the
// connection limit, the listening line, the restart budget, the messages, and how one reload
// across the workers is gathered and reported.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { listeningLine, parseWorkers, workerLimits } from '../src/cli/proxy-options.js';
import { asFromWorker, asToWorker } from '../src/cli/worker-protocol.js';
import { reloadReport, ReloadRound, type ReloadOutcome } from '../src/cli/worker-reloads.js';
import { RestartBudget } from '../src/cli/worker-restarts.js';
import { DEFAULT_LIMITS } from '../src/proxy/limits.js';

const ref = (index: number) => ({ id: 100 + index, index, pid: 1000 + index });

describe('proxy workers: options', () => {
  it('--workers takes auto (one per usable core) or a whole number from 1', () => {
    expect(parseWorkers('auto')).toBe(os.availableParallelism());
    expect(parseWorkers('1')).toBe(1);
    expect(parseWorkers('8')).toBe(8);
    for (const bad of ['0', '-2', '1.5', 'two', '', ' 2', '100000']) expect(() => parseWorkers(bad), bad).toThrow(/must be auto or a whole number/);
  });

  it('each worker admits an equal share of --max-connections (of the default too), rounded up', () => {
    expect(workerLimits({ maxConnections: 100 }, 2).maxConnections).toBe(50);
    expect(workerLimits({ maxConnections: 5 }, 2).maxConnections).toBe(3);
    expect(workerLimits({ maxConnections: 1 }, 4).maxConnections).toBe(1);
    expect(workerLimits({ idleTimeoutMs: 7 }, 2)).toEqual({ idleTimeoutMs: 7, maxConnections: DEFAULT_LIMITS.maxConnections / 2 });
  });

  it('the listening line says how many workers serve, last, and nothing for one process', () => {
    const base = { address: { host: '127.0.0.1', port: 3128 }, sniAddress: { host: '::1', port: 3129 }, reportOnly: false, inspecting: true };
    expect(listeningLine(base)).toBe('portcullis proxy listening on 127.0.0.1:3128 (sni [::1]:3129), inspecting TLS\n');
    expect(listeningLine({ ...base, workers: 1 })).toBe(listeningLine(base));
    expect(listeningLine({ ...base, upstreamProxy: 'up:8080', workers: 2 })).toBe(
      'portcullis proxy listening on 127.0.0.1:3128 (sni [::1]:3129), inspecting TLS, on through the upstream proxy up:8080, 2 workers\n',
    );
  });
});

describe('proxy workers: restarts and messages', () => {
  it('allows restarts until the fifth death within ten seconds', () => {
    const budget = new RestartBudget(5, 10_000);
    expect([0, 1_000, 2_000, 3_000].map((t) => budget.allowsRestart(t))).toEqual([true, true, true, true]);
    expect(budget.allowsRestart(9_999)).toBe(false);
    const spread = new RestartBudget(5, 10_000);
    // Deaths further apart than the window never add up.
    expect(Array.from({ length: 20 }, (_, i) => spread.allowsRestart(i * 2_600)).every(Boolean)).toBe(true);
  });

  it('knows its own messages by kind and ignores anything else', () => {
    expect(asToWorker({ kind: 'reload', id: 3 })).toEqual({ kind: 'reload', id: 3 });
    expect(asToWorker({ kind: 'listening' })).toBeNull();
    expect(asFromWorker({ kind: 'listening', address: { host: '127.0.0.1', port: 1 } })).not.toBeNull();
    for (const other of [null, 'stop', 3, { cmd: 'NODE_CLUSTER' }, { kind: 7 }]) {
      expect(asToWorker(other)).toBeNull();
      expect(asFromWorker(other)).toBeNull();
    }
  });
});

describe('proxy workers: one reload across them', () => {
  const ok = (id: number, closed: number) => ({ kind: 'reloaded' as const, id, ok: true, closed });
  const refused = (id: number, error: string) => ({ kind: 'reloaded' as const, id, ok: false, error, closed: 0 });

  it('settles once every worker asked has answered or exited, in worker order', () => {
    let done: ReloadOutcome[] | null = null;
    const round = new ReloadRound(7, [ref(1), ref(2), ref(3)], (o) => (done = o));
    round.answer(ref(3).id, ok(7, 1));
    round.answer(999, ok(7, 5)); // not asked: ignored
    round.gone(ref(1).id);
    expect(done).toBeNull();
    round.answer(ref(2).id, ok(7, 2));
    round.answer(ref(2).id, refused(7, 'late')); // a second answer changes nothing
    expect(done!.map((o) => [o.index, o.result?.ok ?? null])).toEqual([[1, null], [2, true], [3, true]]);
  });

  it('settles at once with no worker, and at expiry with those that did not answer', () => {
    let none: ReloadOutcome[] | null = null;
    new ReloadRound(1, [], (o) => (none = o));
    expect(none).toEqual([]);
    let late: ReloadOutcome[] | null = null;
    const round = new ReloadRound(2, [ref(1), ref(2)], (o) => (late = o));
    round.answer(ref(1).id, ok(2, 0));
    round.expire();
    expect(late!.map((o) => o.result === null)).toEqual([false, true]);
  });

  it('reports once when every worker did the same, as the single process words it; else per worker', () => {
    const outcome = (i: number, result: ReloadOutcome['result']): ReloadOutcome => ({ ...ref(i), result });
    expect(reloadReport([outcome(1, ok(1, 2)), outcome(2, ok(1, 3))])).toBe('portcullis proxy: policy reloaded in 2 workers (5 connection(s) closed)\n');
    expect(reloadReport([outcome(1, refused(1, 'p.yaml:1:1: bad')), outcome(2, refused(1, 'p.yaml:1:1: bad'))])).toBe(
      'portcullis proxy: reload refused, previous policy stays:\np.yaml:1:1: bad\n',
    );
    expect(reloadReport([outcome(1, ok(1, 0)), outcome(2, refused(1, 'changed meanwhile'))])).toBe(
      'portcullis proxy: worker 1: policy reloaded (0 connection(s) closed)\nportcullis proxy: worker 2: reload refused, previous policy stays:\nchanged meanwhile\n',
    );
    expect(reloadReport([outcome(1, ok(1, 0)), outcome(2, null)])).toContain('worker 2 (pid 1002) did not answer');
    expect(reloadReport([outcome(2, ok(1, 0))])).toBe('portcullis proxy: policy reloaded in 1 worker (0 connection(s) closed)\n');
    expect(reloadReport([])).toBe('portcullis proxy: no worker is running to reload\n');
  });
});
