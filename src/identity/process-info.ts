// What procfs says about one process: its executable (the kernel's path, not argv[0]), its
// command line (for logs only) and its chain of parents.
import { existsSync, readlinkSync } from 'node:fs';
import { readProcText } from './proc-read.js';
import { readProcStat } from './process-table.js';
import { UnresolvedError, unresolvedFromFsError } from './unresolved.js';

const DELETED_SUFFIX = ' (deleted)';
export const MAX_ANCESTORS = 64;

export interface ExecutablePath {
  path: string;
  /** The file was deleted or replaced after the process started. */
  deleted: boolean;
}

/** The path the kernel records as the running image; " (deleted)" is split off. Pure. */
export function parseExeLink(target: string): ExecutablePath {
  return target.endsWith(DELETED_SUFFIX)
    ? { path: target.slice(0, -DELETED_SUFFIX.length), deleted: true }
    : { path: target, deleted: false };
}

export function readExecutable(pid: number, procDir = '/proc'): ExecutablePath {
  try {
    return parseExeLink(readlinkSync(`${procDir}/${pid}/exe`));
  } catch (err) {
    // A live process without an exe link is a kernel thread or a zombie: nothing to name.
    if (errorIsMissing(err) && existsSync(`${procDir}/${pid}/stat`)) {
      throw new UnresolvedError('unreadable_exe', `process ${pid} has no executable link`);
    }
    throw unresolvedFromFsError(err, 'unreadable_exe', `reading ${procDir}/${pid}/exe`);
  }
}

function errorIsMissing(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'ENOENT';
}

/** argv as the process set it; empty when it cannot be read (only ever used in logs). */
export function readCmdline(pid: number, procDir = '/proc'): string[] {
  try {
    const text = readProcText(`${procDir}/${pid}/cmdline`, 'utf8');
    const args = text.split('\0');
    if (args.at(-1) === '') args.pop();
    return args;
  } catch {
    return [];
  }
}

/**
 * Whether `pid` is pid 1 of a PID namespace below the root one (a sandbox's init): there, what
 * pid 1 is on the host, the adopter of orphans, whose own ancestors are the sandbox's machinery.
 */
export function isNamespaceInit(pid: number, procDir = '/proc'): boolean {
  try {
    return /^NSpid:\s.*\s1$/m.test(readProcText(`${procDir}/${pid}/status`, 'latin1'));
  } catch {
    return false;
  }
}

/**
 * Parent pids of `pid`, nearest first: stops after the anchor (included), before pid 1 (every
 * process's ancestor, so naming it would match everything), before the init of an anchored
 * sandbox's PID namespace (the same in there) and after MAX_ANCESTORS levels.
 * A parent that exits while we walk ends the chain there.
 */
export function readAncestorPids(pid: number, anchorPid: number | undefined, procDir = '/proc'): number[] {
  const chain: number[] = [];
  if (pid === anchorPid) return chain;
  let current = pid;
  while (chain.length < MAX_ANCESTORS) {
    let parent: number;
    try {
      parent = readProcStat(current, procDir).ppid;
    } catch (err) {
      if (current === pid) throw unresolvedFromFsError(err, 'process_gone', `reading ${procDir}/${pid}/stat`);
      break;
    }
    if (parent <= 1 || chain.includes(parent)) break;
    if (anchorPid !== undefined && parent !== anchorPid && isNamespaceInit(parent, procDir)) break;
    chain.push(parent);
    if (parent === anchorPid) break;
    current = parent;
  }
  return chain;
}
