// What one lookup has read natively of each process (native-procfs.ts): the owner search, the
// choice of owner and the description ask about the same few processes, and each is read once
// per lookup (never kept beyond it: an exec or an exit between lookups is always seen).
import type { NativeProcfs, ProcessRead } from './native-procfs.js';
import type { PinnedOwners } from './pinned-owners.js';
import type { ExecutablePath } from './process-info.js';
import { UnresolvedError, unresolvedFromFsError } from './unresolved.js';

export class LookupReads {
  private readonly reads = new Map<number, ProcessRead | Error>();

  constructor(
    private readonly native: NativeProcfs,
    private readonly anchorPid: number | undefined,
    /** Processes held open: read through those files when they are still what they were. */
    private readonly pins: PinnedOwners | null = null,
  ) {}

  /** Processes read together with another (a chain): taken as read by this lookup. */
  note(chain: readonly ProcessRead[]): void {
    for (const read of chain) if (!this.reads.has(read.pid)) this.reads.set(read.pid, read);
  }

  /** The process as this lookup read it (through its pinned files when it is pinned). Throws an fs-like error. */
  process(pid: number): ProcessRead {
    let read = this.reads.get(pid);
    const pinned = read === undefined ? this.pins?.get(pid) : undefined;
    if (pinned) {
      read = this.native.readPinned(pinned) ?? undefined;
      if (read) this.reads.set(pid, read);
    }
    if (read === undefined) {
      try {
        const [fresh] = this.native.chain(pid, 1, this.anchorPid);
        // Read by pid where the pinned process could not tell (it exited, or exec'd): only the
        // same process (start time) may answer for it.
        if (pinned && fresh!.startTime !== pinned.startTime) throw Object.assign(new Error(`process ${pid} exited`), { code: 'ESRCH' });
        read = fresh!;
      } catch (err) {
        read = err as Error;
      }
      this.reads.set(pid, read);
    }
    if (read instanceof Error) throw read;
    return read;
  }

  /** Its executable, failing as readExecutable does (process-info.ts). */
  executable(pid: number): ExecutablePath {
    let read: ProcessRead;
    try {
      read = this.process(pid);
    } catch (err) {
      throw unresolvedFromFsError(err, 'unreadable_exe', `reading /proc/${pid}/exe`);
    }
    if (read.exe) return read.exe;
    if (read.exeError === 'none') throw new UnresolvedError('unreadable_exe', `process ${pid} has no executable link`);
    throw unresolvedFromFsError(Object.assign(new Error(read.exeError ?? 'unreadable'), { code: read.exeError }), 'unreadable_exe', `reading /proc/${pid}/exe`);
  }
}
