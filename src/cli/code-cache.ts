// V8's code cache for the bundled program, kept in ~/.cache/portcullis/v8/ (one file per
// sub-command): with it, Node skips parsing the bundle and compiling the functions an earlier
// run of the same sub-command compiled. A file starts with a key line naming the bundle (size,
// mtime, inode) and the Node build; any other key, or a cache V8 rejects, is simply not used,
// and the file is rewritten when the process exits.
import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { portcullisCacheDir, readTrustedCacheFile } from '../util/cache-dir.js';

export interface CodeCacheEntry {
  /** The cached data when it belongs to this bundle and this Node, else undefined. */
  data: Buffer | undefined;
  /** Writes `data` as the entry (atomically; errors ignored: the cache is only an optimisation). */
  save(data: Buffer): void;
}

function cacheDir(): string {
  return portcullisCacheDir('v8');
}

/** The key line for `bundle`: changes whenever the file or the Node build changes. */
export function bundleKey(bundle: string): string {
  const stat = statSync(bundle);
  return `${stat.size}-${stat.mtimeMs}-${stat.ino} ${process.version}-${process.arch}\n`;
}

/** Splits a cache file into its key line and the data after it. Pure. */
export function parseCacheFile(contents: Buffer): { key: string; data: Buffer } | null {
  const newline = contents.indexOf(10);
  if (newline < 0) return null;
  return { key: contents.subarray(0, newline + 1).toString('latin1'), data: contents.subarray(newline + 1) };
}

export function openCodeCache(bundle: string, name: string): CodeCacheEntry {
  const key = bundleKey(bundle);
  const file = join(cacheDir(), `${name}.v8`);
  let data: Buffer | undefined;
  // V8 runs what the cache holds: only a file no one else could have written is used.
  const contents = readTrustedCacheFile(file);
  const parsed = contents ? parseCacheFile(contents) : null;
  if (parsed?.key === key) data = parsed.data;
  return {
    data,
    save(fresh: Buffer) {
      try {
        mkdirSync(cacheDir(), { recursive: true, mode: 0o700 });
        const partial = `${file}.${process.pid}.tmp`;
        writeFileSync(partial, Buffer.concat([Buffer.from(key, 'latin1'), fresh]), { mode: 0o600 });
        renameSync(partial, file);
      } catch {
        // read-only home or full disk: run without a cache
      }
    },
  };
}
