// SHA-256 of executables, trust on first use.
//
// A file is hashed once per fingerprint (size, mtime, ctime, device, inode): an unchanged file
// is never read again, and any write to it changes its ctime. The first hash seen at a path is
// the trusted one; a different hash later at the same path is an integrity violation.
// Hashing streams the file (reads happen off the event loop, in small chunks), so a 100 MB
// binary does not hold up other connections.
import { createHash } from 'node:crypto';
import { statSync, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';

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
  /** Number of files actually read and hashed (the rest came from the cache). */
  filesHashed = 0;

  /**
   * Hashes the executable of `pid` (through /proc/<pid>/exe, so the file the process runs,
   * even if it was deleted or replaced since) and checks it against the first hash seen at
   * `path`. Throws the fs error when the file cannot be read.
   */
  async check(pid: number, path: string): Promise<HashResult> {
    const sha256 = await this.hashOf(`/proc/${pid}/exe`);
    const first = this.trusted.get(path);
    if (first === undefined) {
      this.trusted.set(path, sha256);
      return { sha256 };
    }
    if (first === sha256) return { sha256 };
    return { sha256, violation: `${path}: sha256 ${sha256} differs from ${first}, first seen at this path` };
  }

  private async hashOf(exeLink: string): Promise<string> {
    const key = fingerprintOf(statSync(exeLink, { bigint: true }));
    const known = this.hashes.get(key) ?? (await this.pending.get(key));
    if (known !== undefined) return known;
    const work = this.hashFile(exeLink);
    this.pending.set(key, work);
    try {
      return await work;
    } finally {
      this.pending.delete(key);
    }
  }

  private async hashFile(exeLink: string): Promise<string> {
    const handle = await open(exeLink, 'r');
    try {
      // The fingerprint of what we actually opened, in case the file changed since the stat.
      const key = fingerprintOf(await handle.stat({ bigint: true }));
      const hash = createHash('sha256');
      for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 256 * 1024 })) {
        hash.update(chunk as Buffer);
      }
      const digest = hash.digest('hex');
      this.hashes.set(key, digest);
      this.filesHashed += 1;
      return digest;
    } finally {
      await handle.close();
    }
  }
}
