// Where portcullis keeps what it can rebuild: $XDG_CACHE_HOME/portcullis, else ~/.cache/portcullis.
// What is read back from there (compiled policy, V8 code, executables' hashes) decides what
// runs and what is allowed, so a file that someone else could have written is never used: it
// and its directory must belong to us (or root) and be writable by no one else.
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export function portcullisCacheDir(...parts: string[]): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'portcullis', ...parts);
}

/** Owned by this user or root, and not writable by group or others. Pure. */
export function writableOnlyByUs(stats: { uid: number; mode: number }, uid = process.geteuid?.() ?? stats.uid): boolean {
  return (stats.uid === uid || stats.uid === 0) && (stats.mode & 0o022) === 0;
}

/** The file's contents when it and its directory pass writableOnlyByUs; null otherwise or when unreadable. */
export function readTrustedCacheFile(path: string): Buffer | null {
  try {
    if (!writableOnlyByUs(statSync(dirname(path)))) return null;
    const fd = openSync(path, 'r');
    try {
      return writableOnlyByUs(fstatSync(fd)) ? readFileSync(fd) : null;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}
