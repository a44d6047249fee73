// The caller's ancestors (nearest first) with their executables and hashes, kept briefly per
// parent process: a client that opens many connections has the same ancestors each time, and
// walking them costs a stat read, an exe read and a hash check per level.
// What is kept is keyed by the parent's pid and start time (a pid reused by another process is
// another key), and is used only while the parent, read afresh at every lookup, still runs the
// executable it ran (an exec keeps the pid and the start time, so this is checked apart) and
// still has the same parent (an exit above it reparents it). Further up, an ancestor that exits
// or execs is seen within ANCESTRY_TTL_MS. The caller's own executable is never kept.
import type { BinaryIntegrity, HashResult } from './integrity.js';
import type { LookupReads } from './lookup-reads.js';
import type { NativeProcfs, ProcessRead } from './native-procfs.js';
import { isNamespaceInit, MAX_ANCESTORS, readAncestorPids, readExecutable } from './process-info.js';
import { readProcStat } from './process-table.js';
import type { AncestorIdentity } from './types.js';
import { unresolvedFromFsError } from './unresolved.js';

export const ANCESTRY_TTL_MS = 200;
const MAX_KEPT = 1024;

export interface Ancestry {
  ancestors: readonly AncestorIdentity[];
  /** Integrity violations among the ancestors' executables. */
  violations: readonly string[];
}

const NONE: Ancestry = { ancestors: [], violations: [] };

/** The parent as this lookup saw it: what a kept ancestry must still match. */
interface ParentLook {
  pid: number;
  startTime: number;
  /** Its executable's path, and fingerprint when known (native reads). */
  path: string | undefined;
  fingerprint: string | null;
  /** Its own parent now. */
  ppid: number;
}

interface Kept {
  at: number;
  ancestry: Ancestry;
  parent: ParentLook;
}

export class AncestryCache {
  private readonly kept = new Map<string, Kept>();

  constructor(private readonly integrity: BinaryIntegrity) {}

  /**
   * Ancestors of `pid` read from JavaScript, stopping after the anchor; throws process_gone when
   * `pid` has exited. `knownParent`: the parent as a look at the process tree during this lookup found it.
   */
  async of(pid: number, anchorPid: number | undefined, knownParent?: number): Promise<Ancestry> {
    if (pid === anchorPid) return NONE;
    let parent: number;
    try {
      parent = knownParent ?? readProcStat(pid).ppid;
    } catch (err) {
      throw unresolvedFromFsError(err, 'process_gone', `reading /proc/${pid}/stat`);
    }
    if (parent <= 1 || (anchorPid !== undefined && parent !== anchorPid && isNamespaceInit(parent))) return NONE;
    let look: ParentLook;
    try {
      const stat = readProcStat(parent);
      look = { pid: parent, startTime: stat.startTime, ppid: stat.ppid, path: undefined, fingerprint: null };
    } catch {
      return NONE; // the parent exited: the chain ends before it
    }
    return this.keptOr(parentKey(look, anchorPid), look, () => this.walk(parent, anchorPid));
  }

  /**
   * The same from native reads. Kept first by the owner itself (its pid and start time) with its
   * parent's pid: the same process still under the same parent pid is under the same parent
   * (a reparented process's new parent was alive, so had another pid, before the old one
   * exited). Else by the parent, read now; a walk is one native call.
   */
  async ofRead(owner: ProcessRead, anchorPid: number | undefined, reads: LookupReads, native: NativeProcfs): Promise<Ancestry> {
    if (owner.pid === anchorPid || owner.ppid <= 1) return NONE;
    // An orphan adopted by an anchored sandbox's init: its ancestors are the sandbox's machinery.
    if (anchorPid !== undefined && owner.ppid !== anchorPid && isNamespaceInit(owner.ppid)) return NONE;
    const byOwner = `owner ${owner.pid}:${owner.startTime}>${owner.ppid}/${anchorPid ?? ''}`;
    const hit = this.fresh(byOwner);
    if (hit) return hit.ancestry;
    let parent: ProcessRead;
    try {
      parent = reads.process(owner.ppid);
    } catch {
      return NONE;
    }
    if (!parent.exe || !parent.fingerprint) return NONE;
    const look = { pid: parent.pid, startTime: parent.startTime, ppid: parent.ppid, path: parent.exe.path, fingerprint: parent.fingerprint };
    const ancestry = await this.keptOr(parentKey(look, anchorPid), look, async () => {
      let chain: ProcessRead[];
      try {
        chain = native.chain(parent.pid, MAX_ANCESTORS + 1, anchorPid);
      } catch {
        return NONE;
      }
      // The chain ends before an unreadable level, and before the init of an anchored sandbox's
      // PID namespace (as readAncestorPids does).
      const end = chain.findIndex((read) => !read.exe || !read.fingerprint || (anchorPid !== undefined && read.pid !== anchorPid && isNamespaceInit(read.pid)));
      const levels = end < 0 ? chain : chain.slice(0, end);
      const ancestors = levels.map((read) => ({ pid: read.pid, path: read.exe!.path }));
      return this.hashed(ancestors, (i) => this.integrity.checkFingerprinted(levels[i]!.pid, levels[i]!.exe!.path, levels[i]!.fingerprint!));
    });
    this.keep(byOwner, { at: performance.now(), ancestry, parent: look });
    return ancestry;
  }

  /** The kept ancestry when the parent is still what it was, else a new walk (kept). */
  private async keptOr(key: string, parent: ParentLook, walk: () => Promise<Ancestry>): Promise<Ancestry> {
    const hit = this.fresh(key);
    if (hit && sameParent(hit.parent, parent)) return hit.ancestry;
    const at = performance.now();
    const ancestry = await walk();
    this.keep(key, { at, ancestry, parent });
    return ancestry;
  }

  private fresh(key: string): Kept | undefined {
    const hit = this.kept.get(key);
    return hit && performance.now() - hit.at <= ANCESTRY_TTL_MS ? hit : undefined;
  }

  private keep(key: string, entry: Kept): void {
    this.kept.delete(key);
    this.kept.set(key, entry);
    for (const [oldest] of this.kept) {
      if (this.kept.size <= MAX_KEPT) break;
      this.kept.delete(oldest);
    }
  }

  private async walk(parent: number, anchorPid: number | undefined): Promise<Ancestry> {
    let chain: number[];
    try {
      chain = [parent, ...(parent === anchorPid ? [] : readAncestorPids(parent, anchorPid))];
    } catch {
      chain = [parent]; // the parent exited while we looked: its exe read below ends the chain
    }
    const ancestors: AncestorIdentity[] = [];
    for (const ancestorPid of chain) {
      try {
        ancestors.push({ pid: ancestorPid, path: readExecutable(ancestorPid).path });
      } catch {
        break; // the chain is only as long as it is readable
      }
    }
    return this.hashed(ancestors, (i) => this.integrity.check(ancestors[i]!.pid, ancestors[i]!.path));
  }

  /** Adds each ancestor's hash (where it could be read) and collects the violations. */
  private async hashed(ancestors: AncestorIdentity[], check: (index: number) => Promise<HashResult>): Promise<Ancestry> {
    const hashes = await Promise.allSettled(ancestors.map((_, i) => check(i)));
    const violations: string[] = [];
    hashes.forEach((result, i) => {
      if (result.status !== 'fulfilled') return;
      ancestors[i]!.sha256 = result.value.sha256;
      if (result.value.violation) violations.push(result.value.violation);
    });
    return { ancestors, violations };
  }
}

function parentKey(parent: ParentLook, anchorPid: number | undefined): string {
  return `parent ${parent.pid}:${parent.startTime}/${anchorPid ?? ''}`;
}

/** The same process (key), still running the same file, still under the same parent. Pure. */
function sameParent(kept: ParentLook, now: ParentLook): boolean {
  return kept.path === now.path && kept.fingerprint === now.fingerprint && kept.ppid === now.ppid;
}
