// The recent owners held open through the native addon (see pin in native/sock-diag.c): the
// next connection of a client that connected before is looked for in it first, through files
// that reach that process and no other. A process is pinned only if it is still the one a
// lookup read (same start time), and let go when it is no longer a recent owner.
import type { FdSnapshots } from './fd-snapshots.js';
import type { LookupReads } from './lookup-reads.js';
import type { NativeProcfs, PinnedProcess, ProcessRead } from './native-procfs.js';
import type { ExecutablePath } from './process-info.js';

/** The link text an ExecutablePath was parsed from. Pure. */
function linkText(exe: ExecutablePath): string {
  return exe.deleted ? `${exe.path} (deleted)` : exe.path;
}

export class PinnedOwners {
  private readonly pinned = new Map<number, PinnedProcess>();
  /** Lookups whose owner a probe found. */
  found = 0;

  constructor(private readonly native: NativeProcfs) {}

  /**
   * Looks for socket `inode` in the recent owners (`candidates`, in order) in one native call:
   * each at the numbers where its earlier sockets were, the first also through its table (as the
   * search one by one would read it next), and the holder read as it is now (noted in `reads`).
   * What their kept fd tables already tell needs no read at all. The holder, or undefined.
   */
  probe(inode: number, candidates: readonly number[], notBefore: number, snapshots: FdSnapshots, reads: LookupReads): number | undefined {
    const probed: Array<{ pinned: PinnedProcess; hints: number[] }> = [];
    let known: number | undefined;
    for (const pid of candidates) {
      const recalled = snapshots.recall(pid, inode, notBefore);
      const pinned = this.pinned.get(pid);
      if ('hints' in recalled) {
        // The first one the memory cannot answer is read through its table, the later ones at
        // their hints only; one not pinned ends the probe (the search one by one reads it).
        if (!pinned) break;
        if (probed.length === 0 || recalled.hints.length > 0) probed.push({ pinned, hints: recalled.hints });
      } else if (recalled.held) {
        known = pid;
        break;
      }
    }
    if (probed.length === 0) return known;
    const startedAt = performance.now();
    const { reads: tables, holder } = this.native.identify(inode, probed, snapshots.readingPlan(probed[0]!.pinned.pid, startedAt));
    tables.forEach(({ pid, read }, i) => {
      // Reads at hints only that missed show nothing lasting; the others are kept.
      if (i === 0 || read.found !== null) snapshots.absorb(pid, inode, read, startedAt);
    });
    if (!holder) return known;
    this.found += 1;
    // Else it exited, or its executable changed: read anew (by pid) when asked for.
    if (holder.process) reads.note([holder.process]);
    return holder.pid;
  }

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
