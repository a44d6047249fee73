// Hashes of executables kept on disk between runs, by fingerprint (device, inode, size, mtime,
// ctime: any write to a file changes its ctime). Each `portcullis run` starts a new proxy, and
// hashing a 100 MB interpreter again at its first connection costs tens of milliseconds.
// It is only a cache of file contents: the trust-on-first-use record (the first hash seen at a
// path) stays with the process. A poisoned store could vouch for a tampered file, so one that
// another user could write is not used (see util/cache-dir.ts).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readTrustedCacheFile } from '../util/cache-dir.js';

const MAX_ENTRIES = 4096;
const WRITE_DELAY_MS = 500;
const FORMAT = 1;

export class HashStore {
  private hashes: Map<string, string> | null = null;
  private writeTimer: NodeJS.Timeout | null = null;

  constructor(private readonly path: string) {}

  get(fingerprint: string): string | undefined {
    return this.load().get(fingerprint);
  }

  put(fingerprint: string, sha256: string): void {
    const hashes = this.load();
    hashes.delete(fingerprint);
    hashes.set(fingerprint, sha256);
    for (const [oldest] of hashes) {
      if (hashes.size <= MAX_ENTRIES) break;
      hashes.delete(oldest);
    }
    this.writeTimer ??= setTimeout(() => this.flush(), WRITE_DELAY_MS).unref();
  }

  /** Reads the file now rather than at the first lookup. */
  preload(): void {
    this.load();
  }

  /** Writes pending entries now (atomically: a reader sees the old file or the new one). */
  flush(): void {
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = null;
    if (!this.hashes) return;
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      const temporary = `${this.path}.${process.pid}.tmp`;
      writeFileSync(temporary, JSON.stringify({ format: FORMAT, hashes: Object.fromEntries(this.hashes) }), { mode: 0o600 });
      renameSync(temporary, this.path);
    } catch {
      // Only a cache: the next run hashes again.
    }
  }

  private load(): Map<string, string> {
    if (this.hashes) return this.hashes;
    this.hashes = new Map();
    const text = readTrustedCacheFile(this.path);
    if (!text) return this.hashes;
    try {
      const parsed = JSON.parse(text.toString('utf8')) as { format?: unknown; hashes?: unknown };
      if (parsed.format !== FORMAT || typeof parsed.hashes !== 'object' || parsed.hashes === null) return this.hashes;
      for (const [fingerprint, sha256] of Object.entries(parsed.hashes)) {
        if (typeof sha256 === 'string' && /^[0-9a-f]{64}$/.test(sha256)) this.hashes.set(fingerprint, sha256);
      }
    } catch {
      // Not a store: start empty.
    }
    return this.hashes;
  }
}
