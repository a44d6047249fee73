// SHA-256 of executables, trust on first use.
//
// A file is hashed once per fingerprint (size, mtime, ctime, device, inode): an unchanged file
// is never read again, and any write to it changes its ctime. The first hash seen at a path is
// the trusted one; a different hash later at the same path is an integrity violation.
// Hashing streams the file (reads happen off the event loop, in small chunks), so a 100 MB
// binary does not hold up other connections.
import { createHash } from 'node:crypto';
import { readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';
import type { HashStore } from './hash-store.js';
import { parseExeLink } from './process-info.js';
import { UnresolvedError } from './unresolved.js';

export interface HashResult {
  sha256: string;
  /** Set when the path was first seen with a different hash. */
  violation?: string;
}

export function fingerprintOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

export class BinaryIntegrity {
  private readonly hashes = new Map<string, string>();
  private readonly pending = new Map<string, Promise<string>>();
  private readonly trusted = new Map<string, string>();
  /** Number of files actually read and hashed (the rest came from the caches). */
  filesHashed = 0;

  /** `store`: hashes kept on disk between runs (see hash-store.ts). */
  constructor(private readonly store?: HashStore) {}

  /**
   * Hashes the executable of `pid` (through /proc/<pid>/exe, so the file the process runs,
   * even if it was deleted or replaced since) and checks it against the first hash seen at
   * `path`. Throws the fs error when the file cannot be read.
   */
  async check(pid: number, path: string): Promise<HashResult> {
    const exeLink = `/proc/${pid}/exe`;
    const key = fingerprintOf(statSync(exeLink, { bigint: true }));
    const sha256 = this.hashes.get(key) ?? this.fromStore(key) ?? (await this.hashOnce(exeLink, key));
    // `path` was read before the stat: if the process exec'd another file in between, the hash
    // would be of that file and must not be recorded against `path`.
    if (parseExeLink(readlinkSync(exeLink)).path !== path) {
      throw new UnresolvedError('process_gone', `process ${pid} replaced its executable during resolution`);
    }
    return this.verdict(path, sha256);
  }

  /**
   * The same for a path and fingerprint read together (the link read again after the
   * fingerprint, see native-procfs.ts): nothing is read unless the file must be hashed, and then
   * the file hashed is checked to be the one fingerprinted.
   */
  async checkFingerprinted(pid: number, path: string, fingerprint: string): Promise<HashResult> {
    const sha256 = this.hashes.get(fingerprint) ?? this.fromStore(fingerprint) ?? (await this.hashOnce(`/proc/${pid}/exe`, fingerprint));
    return this.verdict(path, sha256);
  }

  /** Trust on first use: the first hash seen at a path is the one every later one must match. */
  private verdict(path: string, sha256: string): HashResult {
    const first = this.trusted.get(path);
    if (first === undefined) {
      this.trusted.set(path, sha256);
      return { sha256 };
    }
    if (first === sha256) return { sha256 };
    return { sha256, violation: `${path}: sha256 ${sha256} differs from ${first}, first seen at this path` };
  }

  private fromStore(key: string): string | undefined {
    const sha256 = this.store?.get(key);
    if (sha256 !== undefined) this.hashes.set(key, sha256);
    return sha256;
  }

  /** Hashes the file once even when several lookups want it at the same time. */
  private async hashOnce(exeLink: string, key: string): Promise<string> {
    let work = this.pending.get(key);
    if (!work) {
      work = this.hashFile(exeLink, key).finally(() => this.pending.delete(key));
      this.pending.set(key, work);
    }
    return work;
  }

  private async hashFile(exeLink: string, expectedKey: string): Promise<string> {
    const handle = await open(exeLink, 'r');
    try {
      if (fingerprintOf(await handle.stat({ bigint: true })) !== expectedKey) {
        throw new UnresolvedError('process_gone', `${exeLink} changed while it was being opened`);
      }
      const hash = createHash('sha256');
      for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 256 * 1024 })) {
        hash.update(chunk as Buffer);
      }
      const digest = hash.digest('hex');
      this.hashes.set(expectedKey, digest);
      this.store?.put(expectedKey, digest);
      this.filesHashed += 1;
      return digest;
    } finally {
      await handle.close();
    }
  }
}
