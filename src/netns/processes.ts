// Processes seen from the root namespace's /proc: alive or not, which ones live in a named
// network namespace, whose children they are.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Pids of the processes inside a named namespace, found in-process (what `ip netns pids`
 * does, without a fork): their /proc/<pid>/ns/net names the namespace file's inode.
 */
export function namespacePids(name: string): number[] {
  let inode: number;
  try {
    inode = statSync(`/run/netns/${name}`).ino;
  } catch {
    return [];
  }
  const wanted = `net:[${inode}]`;
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === wanted) out.push(Number(entry));
    } catch {
      // exited, or a kernel thread
    }
  }
  return out;
}

/** Direct children of `pid` (every thread's list); empty when it is gone. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const task of tasks) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ')) {
        if (/^\d+$/.test(child)) out.push(Number(child));
      }
    } catch {
      // thread ended
    }
  }
  return out;
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function killAll(pids: number[]): void {
  for (const pid of pids) killQuietly(pid);
}
