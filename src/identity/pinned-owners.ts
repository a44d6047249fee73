// The recent owners held open through the native addon (see pin in native/sock-diag.c): the
// next connection of a client that connected before is looked for in it first, through files
// that reach that process and no other. A process is pinned only if it is still the one a
// lookup read (same start time), and let go when it is no longer a recent owner.
import type { NativeProcfs, PinnedProcess, ProcessRead } from './native-procfs.js';
import type { ExecutablePath } from './process-info.js';

/** The link text an ExecutablePath was parsed from. Pure. */
function linkText(exe: ExecutablePath): string {
  return exe.deleted ? `${exe.path} (deleted)` : exe.path;
}

export class PinnedOwners {
  private readonly pinned = new Map<number, PinnedProcess>();

  constructor(private readonly native: NativeProcfs) {}

  get(pid: number): PinnedProcess | undefined {
    return this.pinned.get(pid);
  }

  /**
   * Pins the owner `read` describes (its executable as read, for identify to compare with),
   * unless it already is; nothing when it is gone (or its pid reused).
   */
  pin(read: ProcessRead): void {
    const kept = this.pinned.get(read.pid);
    if (kept?.startTime === read.startTime) {
      if (read.exe && read.fingerprint) kept.exe = { link: linkText(read.exe), fingerprint: read.fingerprint };
      return;
    }
    if (kept) this.unpin(read.pid);
    let pinned: PinnedProcess;
    try {
      pinned = this.native.pin(read.pid);
    } catch {
      return;
    }
    if (pinned.startTime !== read.startTime) return this.native.unpin(pinned);
    if (read.exe && read.fingerprint) pinned.exe = { link: linkText(read.exe), fingerprint: read.fingerprint };
    this.pinned.set(read.pid, pinned);
  }

  /** Lets go of every pinned process not in `keep`. */
  keepOnly(keep: readonly number[]): void {
    for (const pid of this.pinned.keys()) if (!keep.includes(pid)) this.unpin(pid);
  }

  /** The pinned process exited (or was found to be another): let go. */
  unpin(pid: number): void {
    const pinned = this.pinned.get(pid);
    if (!pinned) return;
    this.pinned.delete(pid);
    this.native.unpin(pinned);
  }

  close(): void {
    this.keepOnly([]);
  }
}
