// Puts the DNS proxy's answers into the host maps of `table inet portcullis` (the I/O edge
// between DNS and nft).
//
// Each element `address . port : "allow_ID"` lets a new connection through, counted on the
// counter of the endpoint that owns it (see host-holds.ts: the first holder in policy order). An
// element is (re)written with add + delete + add in one `nft -f -` transaction: the first add
// makes the delete safe when the element is absent (it must name the counter the kernel's copy
// may name, or nft refuses it as a clash), the second sets the owner and timeout (nft 1.0.6
// cannot change an existing element in place). Spawning nft for every answer would cap the
// proxy at a few hundred answers a second, so elements queued in the same tick go out in one
// run, only one run is in flight at a time, and an element is written only when the kernel's
// copy (as tracked here) has another owner or would expire before the answer's TTL runs out.
// Written elements get a little slack over the TTL so that repeated answers can skip nft.
//
// The feeder assumes it is the only writer of the host maps while a ruleset is loaded; `reset()`
// when the ruleset is replaced (the maps start empty again).
import { spawn } from 'node:child_process';
import { isIP } from 'node:net';
import { HostHolds } from './host-holds.js';
import { NFT_FAMILY, NFT_TABLE, counterName, hostMapName, isEndpointId } from './names.js';

/** One `address . port` a hostname endpoint allows. */
export interface HostElement {
  /** Kernel endpoint id (names.ts): the element names its counter. */
  endpoint: string;
  /** Canonical IPv4 or IPv6 address. */
  address: string;
  port: number;
}

export interface TimedHostElement extends HostElement {
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

/** One write to a host map: `address . port` counts on `endpoint` for a while, or is removed. */
export type HostMapOp =
  | { kind: 'set'; address: string; port: number; endpoint: string; timeoutSeconds: number }
  /** `endpoint`: the holder letting go, the owner assumed when nothing else is known. */
  | { kind: 'remove'; address: string; port: number; endpoint: string };

/** What the kernel holds (or will, once a queued write has run) for one `address . port`. */
interface SlotState {
  /** Owner the element names; null for a removal on its way. */
  endpoint: string | null;
  /** Earliest time (ms since epoch) the kernel's copy expires. */
  until: number;
}

interface Batch {
  ops: HostMapOp[];
  done: Promise<void>;
  settle: (err: Error | null) => void;
}

/** Time a run of nft may take before an element it wrote counts as fresh (ms). */
const WRITE_MARGIN_MS = 1_000;
const NFT_TIMEOUT_MS = 30_000;
const PRUNE_AT = 50_000;
/** Knowledge of an element is kept this long past its expiry before it is pruned (ms). */
const FORGET_AFTER_MS = 60_000;

const slotOf = (e: { address: string; port: number }): string => `${e.address}|${e.port}`;

function checkElement(e: HostElement): void {
  if (!isEndpointId(e.endpoint)) throw new NftSetFeederError(`"${e.endpoint}" is not an endpoint id`);
  if (isIP(e.address) === 0) throw new NftSetFeederError(`"${e.address}" is not an IP address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw new NftSetFeederError(`${e.port} is not a port`);
}

/**
 * The nft script for a list of writes, in order. `kernelOwner` says which endpoint the kernel's
 * element names now, where known; later writes in the same script see the earlier ones. Pure.
 */
export function feederScript(ops: HostMapOp[], kernelOwner: (address: string, port: number) => string | undefined = () => undefined): string {
  const table = `${NFT_FAMILY} ${NFT_TABLE}`;
  const owners = new Map<string, string>();
  const lines: string[] = [];
  for (const op of ops) {
    checkElement(op);
    const map = hostMapName(op.address.includes(':') ? 6 : 4);
    const key = `${op.address} . ${op.port}`;
    const slot = slotOf(op);
    const current = owners.get(slot) ?? kernelOwner(op.address, op.port) ?? op.endpoint;
    lines.push(`add element ${table} ${map} { ${key} timeout 1s : "${counterName(current)}" }`);
    lines.push(`delete element ${table} ${map} { ${key} }`);
    if (op.kind === 'set') {
      lines.push(`add element ${table} ${map} { ${key} timeout ${op.timeoutSeconds}s : "${counterName(op.endpoint)}" }`);
    }
    owners.set(slot, op.endpoint);
  }
  return `${lines.join('\n')}\n`;
}

export class NftSetFeeder {
  private readonly netns: string | undefined;
  private readonly slackFraction: number;
  private readonly maxSlackSeconds: number;
  private readonly maxTimeoutSeconds: number;
  private readonly nft: string;
  /** Which endpoints hold each `address . port`, and until when. */
  private readonly holds = new HostHolds();
  /** What the kernel holds per slot, as of the last successful run. */
  private readonly kernel = new Map<string, SlotState>();
  /** Writes queued or in flight: slot → the state they leave and the batch carrying them. */
  private readonly pending = new Map<string, SlotState & { done: Promise<void> }>();
  private queued: Batch | null = null;
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
  add(elements: TimedHostElement[]): Promise<void> {
    const now = Date.now();
    const waits = new Set<Promise<void>>();
    for (const e of elements) {
      checkElement(e);
      const slot = slotOf(e);
      const wanted = Math.min(Math.max(1, Math.ceil(e.timeoutSeconds)), this.maxTimeoutSeconds);
      this.holds.hold(slot, e.endpoint, now + wanted * 1000);
      const owner = this.holds.owner(slot, now)!;
      const onItsWay = this.pending.get(slot);
      const current = onItsWay ?? this.kernel.get(slot);
      if (current !== undefined && current.endpoint === owner && current.until - now >= wanted * 1000 + WRITE_MARGIN_MS) {
        // Fresh in the kernel, or a write with enough time is on its way: wait for that one.
        if (onItsWay !== undefined) waits.add(onItsWay.done);
        continue;
      }
      waits.add(this.enqueue([this.setOp(e, owner, now)]));
    }
    if (waits.size === 0) return Promise.resolve();
    if (waits.size === 1) return waits.values().next().value as Promise<void>;
    return Promise.all(waits).then(() => undefined);
  }

  /**
   * Lets go of elements (the name no longer holds these addresses). An element no other endpoint
   * holds is removed (absent ones are fine); one that others hold passes to the next owner.
   */
  remove(elements: HostElement[]): Promise<void> {
    const now = Date.now();
    const ops: HostMapOp[] = [];
    for (const e of elements) {
      checkElement(e);
      const slot = slotOf(e);
      this.holds.release(slot, e.endpoint);
      const owner = this.holds.owner(slot, now);
      if (owner === null) {
        ops.push({ kind: 'remove', address: e.address, port: e.port, endpoint: e.endpoint });
      } else if ((this.pending.get(slot) ?? this.kernel.get(slot))?.endpoint !== owner) {
        ops.push(this.setOp(e, owner, now));
      }
    }
    return ops.length === 0 ? Promise.resolve() : this.enqueue(ops);
  }

  /** Forgets what is known about the kernel's maps: call after the ruleset was replaced. */
  reset(): void {
    this.holds.clear();
    this.kernel.clear();
    this.pending.clear();
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.running !== null || this.queued !== null) {
      // A queued batch starts on the next turn of the event loop: wait for it there.
      await (this.running ?? new Promise<void>((resolve) => setImmediate(resolve)));
    }
  }

  /** A write of the slot to its owner, living as long as its longest hold plus slack. */
  private setOp(e: HostElement, owner: string, now: number): HostMapOp {
    const lifetime = Math.max(1, Math.ceil((this.holds.lastUntil(slotOf(e), now) - now) / 1000));
    const slack = Math.min(this.maxSlackSeconds, Math.ceil(lifetime * this.slackFraction));
    const timeoutSeconds = Math.min(lifetime + slack, this.maxTimeoutSeconds);
    return { kind: 'set', address: e.address, port: e.port, endpoint: owner, timeoutSeconds };
  }

  private enqueue(ops: HostMapOp[]): Promise<void> {
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
    const now = Date.now();
    for (const op of ops) {
      const state = op.kind === 'set' ? { endpoint: op.endpoint, until: now + op.timeoutSeconds * 1000 } : { endpoint: null, until: 0 };
      this.pending.set(slotOf(op), { ...state, done: batch.done });
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
      await this.exec(feederScript(batch.ops, (address, port) => this.kernel.get(slotOf({ address, port }))?.endpoint ?? undefined));
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    for (const op of batch.ops) {
      const slot = slotOf(op);
      if (this.pending.get(slot)?.done === batch.done) this.pending.delete(slot);
      // On failure the kernel is as it was (nft transactions are atomic): nothing to learn.
      if (failure !== null) continue;
      if (op.kind === 'remove') this.kernel.delete(slot);
      else this.kernel.set(slot, { endpoint: op.endpoint, until: started + op.timeoutSeconds * 1000 });
    }
    if (this.kernel.size > PRUNE_AT) this.prune(Date.now());
    batch.settle(failure);
  }

  /** Forgets elements long expired in the kernel (an expired element is absent to nft). */
  private prune(now: number): void {
    for (const [slot, state] of this.kernel) if (state.until + FORGET_AFTER_MS <= now) this.kernel.delete(slot);
    this.holds.prune(now);
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
