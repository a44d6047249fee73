// Adds the DNS proxy's answers to the host sets of `table inet portcullis` (the I/O edge
// between DNS and nft).
//
// Each element is refreshed with add + delete + add in one `nft -f -` transaction: the first
// add makes the delete safe when the element is absent, the second sets the new timeout (nft
// 1.0.6 cannot change the timeout of an existing element in place). Spawning nft for every
// answer would cap the proxy at a few hundred answers a second, so elements queued in the same
// tick go out in one run, only one run is in flight at a time, and an element is written only
// when the kernel's copy (as tracked here) would expire before the answer's TTL runs out.
// Written elements get a little slack over the TTL so that repeated answers can skip nft.
import { spawn } from 'node:child_process';
import { NFT_FAMILY, NFT_TABLE } from './names.js';

export interface SetElement {
  set: string;
  address: string;
  port: number;
}

export interface TimedSetElement extends SetElement {
  timeoutSeconds: number;
}

export interface NftSetFeederOptions {
  /** Network namespace holding the table (run under `ip netns exec`); absent: this one. */
  netns?: string;
  /** Extra lifetime written beyond the TTL, as a fraction of it (default 0.1, at most maxSlackSeconds). */
  slackFraction?: number;
  maxSlackSeconds?: number;
  /** Never write a timeout longer than this (default one day): a huge TTL must not pin an address. */
  maxTimeoutSeconds?: number;
  /** The nft binary (default `nft`). */
  nft?: string;
}

export class NftSetFeederError extends Error {
  override name = 'NftSetFeederError';
}

type Op = { kind: 'add'; element: SetElement; timeoutSeconds: number } | { kind: 'remove'; element: SetElement };

interface Batch {
  ops: Op[];
  done: Promise<void>;
  settle: (err: Error | null) => void;
}

/** Time a run of nft may take before an element it wrote counts as fresh (ms). */
const WRITE_MARGIN_MS = 1_000;
const NFT_TIMEOUT_MS = 30_000;
const PRUNE_AT = 50_000;

const keyOf = (e: SetElement): string => `${e.set}|${e.address}|${e.port}`;

function elementText(e: SetElement, timeoutSeconds?: number): string {
  const timeout = timeoutSeconds === undefined ? '' : ` timeout ${timeoutSeconds}s`;
  return `${e.address} . ${e.port}${timeout}`;
}

/** The nft script for a list of operations, in order, grouped per set. Pure. */
export function feederScript(ops: Op[]): string {
  const table = `${NFT_FAMILY} ${NFT_TABLE}`;
  const lines: string[] = [];
  for (const op of ops) {
    const e = op.element;
    if (!/^[A-Za-z0-9_]+$/.test(e.set)) throw new NftSetFeederError(`"${e.set}" is not a set name`);
    if (op.kind === 'add') {
      lines.push(`add element ${table} ${e.set} { ${elementText(e, op.timeoutSeconds)} }`);
      lines.push(`delete element ${table} ${e.set} { ${elementText(e)} }`);
      lines.push(`add element ${table} ${e.set} { ${elementText(e, op.timeoutSeconds)} }`);
    } else {
      lines.push(`add element ${table} ${e.set} { ${elementText(e, 1)} }`);
      lines.push(`delete element ${table} ${e.set} { ${elementText(e)} }`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export class NftSetFeeder {
  private readonly netns: string | undefined;
  private readonly slackFraction: number;
  private readonly maxSlackSeconds: number;
  private readonly maxTimeoutSeconds: number;
  private readonly nft: string;
  /** Element key → when (ms since epoch) the kernel's copy expires at the earliest. */
  private readonly expiry = new Map<string, number>();
  private queued: Batch | null = null;
  /** Writes queued or in flight: element key → its timeout and the batch carrying it. */
  private readonly pending = new Map<string, { timeoutSeconds: number; done: Promise<void> }>();
  private running: Promise<void> | null = null;
  /** nft runs so far (for benchmarks and tests). */
  runs = 0;

  constructor(options: NftSetFeederOptions = {}) {
    if (options.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(options.netns)) {
      throw new NftSetFeederError(`"${options.netns}" is not a network namespace name`);
    }
    this.netns = options.netns;
    this.slackFraction = options.slackFraction ?? 0.1;
    this.maxSlackSeconds = options.maxSlackSeconds ?? 30;
    this.maxTimeoutSeconds = options.maxTimeoutSeconds ?? 86_400;
    this.nft = options.nft ?? 'nft';
  }

  /**
   * Makes every element present for at least its timeout from now. Resolves once the kernel
   * has them (at once when they are already fresh); rejects with nft's message on failure.
   */
  add(elements: TimedSetElement[]): Promise<void> {
    const now = Date.now();
    const ops: Op[] = [];
    const waits = new Set<Promise<void>>();
    for (const e of elements) {
      const key = keyOf(e);
      const wanted = Math.min(Math.max(1, Math.ceil(e.timeoutSeconds)), this.maxTimeoutSeconds);
      const known = this.expiry.get(key);
      if (known !== undefined && known - now >= wanted * 1000 + WRITE_MARGIN_MS) continue;
      // A write already on its way with enough time: wait for it instead of writing again.
      const onItsWay = this.pending.get(key);
      if (onItsWay !== undefined && onItsWay.timeoutSeconds >= wanted + 1) {
        waits.add(onItsWay.done);
        continue;
      }
      const slack = Math.min(this.maxSlackSeconds, Math.ceil(wanted * this.slackFraction));
      const timeoutSeconds = Math.min(wanted + slack, this.maxTimeoutSeconds);
      ops.push({ kind: 'add', element: { set: e.set, address: e.address, port: e.port }, timeoutSeconds });
    }
    if (ops.length > 0) waits.add(this.enqueue(ops));
    if (waits.size === 0) return Promise.resolve();
    if (waits.size === 1) return waits.values().next().value as Promise<void>;
    return Promise.all(waits).then(() => undefined);
  }

  /** Removes elements (absent ones are fine). */
  remove(elements: SetElement[]): Promise<void> {
    if (elements.length === 0) return Promise.resolve();
    return this.enqueue(elements.map((e) => ({ kind: 'remove', element: { set: e.set, address: e.address, port: e.port } })));
  }

  /** Forgets what is known about the kernel's sets: call after the ruleset was replaced. */
  reset(): void {
    this.expiry.clear();
    this.pending.clear();
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.running !== null || this.queued !== null) {
      // A queued batch starts on the next turn of the event loop: wait for it there.
      await (this.running ?? new Promise<void>((resolve) => setImmediate(resolve)));
    }
  }

  private enqueue(ops: Op[]): Promise<void> {
    if (this.queued === null) {
      let settle: Batch['settle'] = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err) : resolve());
      });
      // Every waiter handles the outcome; this keeps an unobserved failure from being "unhandled".
      done.catch(() => undefined);
      this.queued = { ops: [], done, settle };
      // Everything queued in this tick joins the same run.
      if (this.running === null) setImmediate(() => this.flush());
    }
    const batch = this.queued;
    batch.ops.push(...ops);
    for (const op of ops) {
      const key = keyOf(op.element);
      if (op.kind === 'add') this.pending.set(key, { timeoutSeconds: op.timeoutSeconds, done: batch.done });
      else this.pending.delete(key);
    }
    return batch.done;
  }

  private flush(): void {
    if (this.running !== null || this.queued === null) return;
    const batch = this.queued;
    this.queued = null;
    this.running = this.run(batch).finally(() => {
      this.running = null;
      if (this.queued !== null) setImmediate(() => this.flush());
    });
  }

  private async run(batch: Batch): Promise<void> {
    const started = Date.now();
    let failure: Error | null = null;
    try {
      await this.exec(feederScript(batch.ops));
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    for (const op of batch.ops) {
      const key = keyOf(op.element);
      if (this.pending.get(key)?.done === batch.done) this.pending.delete(key);
      // On failure nothing of the batch is known to be in place (nft transactions are atomic).
      if (op.kind === 'remove' || failure !== null) this.expiry.delete(key);
      else this.expiry.set(key, started + op.timeoutSeconds * 1000);
    }
    if (this.expiry.size > PRUNE_AT) this.prune(Date.now());
    batch.settle(failure);
  }

  private prune(now: number): void {
    for (const [key, until] of this.expiry) if (until <= now) this.expiry.delete(key);
  }

  private exec(script: string): Promise<void> {
    this.runs++;
    const [file, args] = this.netns === undefined ? [this.nft, ['-f', '-']] : ['ip', ['netns', 'exec', this.netns, this.nft, '-f', '-']];
    return new Promise<void>((resolve, reject) => {
      const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'], timeout: NFT_TIMEOUT_MS });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        if (stderr.length < 4096) stderr += chunk;
      });
      child.on('error', (err) => reject(new NftSetFeederError(`cannot run ${file}: ${err.message}`)));
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else reject(new NftSetFeederError(`nft refused the set update (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(script);
    });
  }
}
