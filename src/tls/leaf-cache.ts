// Leaves by host, each with the TLS context a server uses to present it: a bounded LRU that
// mints a leaf on the first request for a host (concurrent first requests share one minting)
// and never hands out a leaf at or near its expiry.
import { createSecureContext, type SecureContext } from 'node:tls';
import { SERVER_CIPHER_OPTIONS } from './cipher-suites.js';
import { canonicalLeafHost, type Leaf, type LeafMinter } from './leaf.js';

const HOUR_MS = 60 * 60 * 1000;

export interface ServedLeaf extends Leaf {
  /** Key and chain, ready for `tls.createServer`'s SNICallback or `secureContext`. */
  context: SecureContext;
}

export interface LeafCacheOptions {
  /**
   * Leaves kept at most (default 500); the least recently used goes first. Each costs about
   * 33 KiB, mostly OpenSSL's context: 500 is ~16 MiB, and a miss costs a millisecond or two.
   */
  maxEntries?: number;
  /** A leaf is replaced this long before it expires (default 1 h; at most half its lifetime). */
  renewBeforeMs?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  clock?: () => number;
}

export class LeafCache {
  private readonly leaves = new Map<string, ServedLeaf>();
  private readonly minting = new Map<string, Promise<ServedLeaf>>();
  private readonly maxEntries: number;
  private readonly renewBeforeMs: number;
  private readonly clock: () => number;
  /** Leaves minted since the cache was made (a figure for tests and benchmarks). */
  minted = 0;

  constructor(
    private readonly minter: LeafMinter,
    options: LeafCacheOptions = {},
  ) {
    this.maxEntries = options.maxEntries ?? 500;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`leaf cache size must be a positive integer, not ${this.maxEntries}`);
    this.renewBeforeMs = options.renewBeforeMs ?? HOUR_MS;
    this.clock = options.clock ?? Date.now;
  }

  get size(): number {
    return this.leaves.size;
  }

  /** Still good to hand out: valid now and not within the renewal margin of its end. */
  private fresh(leaf: ServedLeaf, now: number): boolean {
    const lifetime = leaf.notAfter.getTime() - leaf.notBefore.getTime();
    const margin = Math.min(this.renewBeforeMs, lifetime / 2);
    return now >= leaf.notBefore.getTime() && now < leaf.notAfter.getTime() - margin;
  }

  /** The cached leaf for `host` when fresh, without minting (for a synchronous SNI callback). */
  peek(host: string): ServedLeaf | undefined {
    const key = canonicalLeafHost(host).host;
    const leaf = this.leaves.get(key);
    if (!leaf) return undefined;
    if (!this.fresh(leaf, this.clock())) {
      this.leaves.delete(key);
      return undefined;
    }
    // Most recently used goes last: Map keeps insertion order.
    this.leaves.delete(key);
    this.leaves.set(key, leaf);
    return leaf;
  }

  /** The leaf for `host`, minted when missing or near expiry; rejects for a name no certificate may carry. */
  get(host: string): Promise<ServedLeaf> {
    let key: string;
    try {
      key = canonicalLeafHost(host).host;
    } catch (err) {
      return Promise.reject(err);
    }
    const cached = this.peek(key);
    if (cached) return Promise.resolve(cached);
    const pending = this.minting.get(key);
    if (pending) return pending;
    const minted = this.mint(key).finally(() => this.minting.delete(key));
    this.minting.set(key, minted);
    return minted;
  }

  private async mint(host: string): Promise<ServedLeaf> {
    const leaf = await this.minter.mint(host, new Date(this.clock()));
    const served: ServedLeaf = { ...leaf, context: createSecureContext({ key: leaf.keyPem, cert: leaf.chainPem, ...SERVER_CIPHER_OPTIONS }) };
    this.minted++;
    this.leaves.delete(host);
    this.leaves.set(host, served);
    while (this.leaves.size > this.maxEntries) this.leaves.delete(this.leaves.keys().next().value as string);
    return served;
  }
}
