// A process's parent and children read from the kernel on demand, where a listing of every
// process would be the slower way: /proc/<pid>/task/<tid>/children lists the children that
// each thread started (it needs CONFIG_PROC_CHILDREN), and /proc/<pid>/stat names the parent.
// Each answer is as of the moment it is read, like a fresh process listing. A list of children
// read after a connection existed answers for that connection too (a fork after the read is
// missed either way), so concurrent lookups share reads, as with fd snapshots.
import { existsSync, readdirSync } from 'node:fs';
import { readProcText } from './proc-read.js';
import { readProcStat } from './process-table.js';

export interface Relatives {
  parentOf(pid: number): number | undefined;
  childrenOf(pid: number): number[];
  /** The anchor and everything below it, breadth first. */
  descendantsOf(anchor: number): number[];
  /** When `pid` started (clock ticks after boot), where this view knows it without a read. */
  startTimeOf?(pid: number): number | undefined;
}

/** Parses a `children` file: pids separated by spaces. Pure. */
export function parseChildrenList(text: string): number[] {
  const pids: number[] = [];
  for (const field of text.split(' ')) {
    const pid = Number(field);
    if (field !== '' && Number.isInteger(pid) && pid > 0) pids.push(pid);
  }
  return pids;
}

/** Reads relatives from procfs; null when this kernel has no `children` files. */
export function kernelRelatives(procDir = '/proc'): KernelRelatives | null {
  return existsSync(`${procDir}/self/task/${process.pid}/children`) ? new KernelRelatives(procDir) : null;
}

/** Bounds the walk below an anchor (a fork bomb must not make one lookup unbounded). */
const MAX_DESCENDANTS = 4096;

/** Children lists kept for sharing between concurrent lookups; far more than are ever in flight. */
const MAX_KEPT = 256;

export class KernelRelatives {
  private readonly kept = new Map<number, { takenAt: number; children: number[] }>();

  constructor(private readonly procDir: string) {}

  /** Relatives as of a moment no earlier than `notBefore`. */
  asOf(notBefore: number): Relatives {
    return {
      parentOf: (pid) => this.parentOf(pid),
      childrenOf: (pid) => this.childrenOf(pid, notBefore),
      descendantsOf: (anchor) => this.descendantsOf(anchor, notBefore),
    };
  }

  private parentOf(pid: number): number | undefined {
    try {
      return readProcStat(pid, this.procDir).ppid;
    } catch {
      return undefined;
    }
  }

  private childrenOf(pid: number, notBefore: number): number[] {
    const kept = this.kept.get(pid);
    if (kept && kept.takenAt >= notBefore) return kept.children;
    const takenAt = performance.now();
    const children = this.readChildren(pid);
    this.kept.delete(pid);
    this.kept.set(pid, { takenAt, children });
    for (const [oldest] of this.kept) {
      if (this.kept.size <= MAX_KEPT) break;
      this.kept.delete(oldest);
    }
    return children;
  }

  private readChildren(pid: number): number[] {
    let threads: string[];
    try {
      threads = readdirSync(`${this.procDir}/${pid}/task`);
    } catch {
      return []; // gone
    }
    const children: number[] = [];
    for (const tid of threads) {
      try {
        children.push(...parseChildrenList(readProcText(`${this.procDir}/${pid}/task/${tid}/children`, 'latin1')));
      } catch {
        // The thread ended since the listing.
      }
    }
    return children;
  }

  private descendantsOf(anchor: number, notBefore: number): number[] {
    const out = [anchor];
    const seen = new Set(out);
    for (let i = 0; i < out.length && out.length < MAX_DESCENDANTS; i++) {
      for (const child of this.childrenOf(out[i]!, notBefore)) {
        if (!seen.has(child)) {
          seen.add(child);
          out.push(child);
        }
      }
    }
    return out;
  }
}
