// The caller's ancestors (nearest first) with their executables and hashes, kept briefly per
// parent process: a client that opens many connections has the same ancestors each time, and
// walking them costs a stat read, an exe readlink and a hash check per level. An ancestor that
// exits or execs is seen within ANCESTRY_TTL_MS; the caller's own executable is always read
// fresh (it is not part of what is kept).
import type { BinaryIntegrity } from './integrity.js';
import { isNamespaceInit, readAncestorPids, readExecutable } from './process-info.js';
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

export class AncestryCache {
  private readonly kept = new Map<string, { at: number; ancestry: Ancestry }>();

  constructor(private readonly integrity: BinaryIntegrity) {}

  /**
   * Ancestors of `pid`, stopping after the anchor; throws process_gone when `pid` has exited.
   * `knownParent`: the parent as a look at the process tree during this lookup found it.
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
    const key = `${parent}/${anchorPid ?? ''}`;
    const now = performance.now();
    const hit = this.kept.get(key);
    if (hit && now - hit.at <= ANCESTRY_TTL_MS) return hit.ancestry;
    const ancestry = await this.walk(parent, anchorPid);
    this.kept.delete(key);
    this.kept.set(key, { at: now, ancestry });
    for (const [oldest] of this.kept) {
      if (this.kept.size <= MAX_KEPT) break;
      this.kept.delete(oldest);
    }
    return ancestry;
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
    const hashes = await Promise.allSettled(ancestors.map((a) => this.integrity.check(a.pid, a.path)));
    const violations: string[] = [];
    hashes.forEach((result, i) => {
      if (result.status !== 'fulfilled') return;
      ancestors[i]!.sha256 = result.value.sha256;
      if (result.value.violation) violations.push(result.value.violation);
    });
    return { ancestors, violations };
  }
}
