// The process table as procfs shows it: parent links from /proc/<pid>/stat, kept in a cache so
// that finding an anchor's descendants reads only the processes started since the last look.
// (/proc/<pid>/task/<tid>/children would give children directly, but it needs
// CONFIG_PROC_CHILDREN, which many kernels lack; the parent links work everywhere.)
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { readProcText } from './proc-read.js';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** Clock ticks after boot; with the pid it names one process across pid reuse. */
  startTime: number;
}

/** Parses /proc/<pid>/stat. The command name is in parentheses and may itself hold ") ". Pure. */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).trim().split(' ');
  // rest[0] is field 3 (state); field 4 is ppid, field 22 is starttime.
  const ppid = Number(rest[1]);
  const startTime = Number(rest[19]);
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || !Number.isFinite(startTime) || rest[0] === undefined) return null;
  return { pid, comm: text.slice(open + 1, close), state: rest[0], ppid, startTime };
}

/** Reads one process's stat line; throws the fs error (ENOENT when it is gone). */
export function readProcStat(pid: number, procDir = '/proc'): ProcStat {
  const stat = parseProcStat(readProcText(`${procDir}/${pid}/stat`, 'latin1'));
  if (!stat) throw new Error(`${procDir}/${pid}/stat is not in the expected format`);
  return stat;
}

/** Every pid in /proc. */
export function listPids(procDir = '/proc'): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(procDir)) {
    const code = name.charCodeAt(0);
    if (code >= 48 && code <= 57) pids.push(Number(name));
  }
  return pids;
}

/** The most recently allocated pid: the last field of /proc/loadavg's text, or null. Pure. */
export function parseLastPid(loadavg: string): number | null {
  const fields = loadavg.trim().split(/\s+/);
  const pid = Number(fields[4]);
  return fields.length === 5 && Number.isInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Reads the most recently allocated pid, once per lookup: /proc/loadavg is kept open and read
 * again from its start (one pread instead of open, stat, read and close).
 */
class LastPidReader {
  private fd: number | null = null;
  private readonly buffer = Buffer.alloc(128);

  constructor(private readonly path: string) {}

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  read(): number | null {
    try {
      this.fd ??= openSync(this.path, 'r');
      const length = readSync(this.fd, this.buffer, 0, this.buffer.length, 0);
      return parseLastPid(this.buffer.toString('latin1', 0, length));
    } catch {
      return null;
    }
  }
}

/** Lets other connections be served during a long scan. */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const READS_BETWEEN_YIELDS = 128;
/** Beyond this many pids allocated since the last look, one listing of /proc costs less than reading each. */
const MAX_PROBED_PIDS = 64;
/** A full listing at least this often forgets the exited processes that incremental looks keep. */
const FULL_LISTING_INTERVAL_MS = 1_000;

/** The Tgid: line of /proc/<pid>/status (the process a thread belongs to). Pure. */
export function threadGroupOf(status: string): number | null {
  const match = /(?:^|\n)Tgid:\s*(\d+)/.exec(status);
  return match ? Number(match[1]) : null;
}

interface ProcessEntry {
  ppid: number;
  startTime: number;
}

export class ProcessTable {
  private readonly entries = new Map<number, ProcessEntry>();
  /** Parent pid → the pids of its children, as the entries say (childrenOf without a walk of every entry). */
  private readonly children = new Map<number, Set<number>>();
  private pids: number[] = [];
  private listedAt = -Infinity;
  private fullyListedAt = -Infinity;
  private listingInBackground = false;
  private lastPid: number | null = null;

  private readonly lastPidReader: LastPidReader;

  constructor(private readonly procDir = '/proc') {
    this.lastPidReader = new LastPidReader(`${procDir}/loadavg`);
  }

  /** Lets go of the file it keeps open; a later refresh opens it again. */
  close(): void {
    this.lastPidReader.close();
  }

  /**
   * Brings the table up to date, unless the last look is younger than `maxAgeMs`, and returns
   * the pids, most recently started first (pid order would not do: pids wrap around).
   * Pids are handed out in order, so the processes started since the last look are the pids
   * allocated since (the last field of /proc/loadavg): when they are few, only those are read.
   * Otherwise /proc is listed and the processes not seen before are read. A listing that only
   * forgets the exited (due every FULL_LISTING_INTERVAL_MS while processes come and go) runs in
   * the background.
   */
  async refresh(maxAgeMs = 0): Promise<readonly number[]> {
    if (performance.now() - this.listedAt < maxAgeMs) return this.pids;
    await this.update(true);
    return this.pids;
  }

  /**
   * Brings the table up to date unless that would take a full listing sooner than the periodic
   * one is due; false when it did not (the caller can ask the kernel's children files instead).
   */
  async refreshUnlessCostly(): Promise<boolean> {
    return this.update(false);
  }

  private async update(listIfNeeded: boolean): Promise<boolean> {
    // No pid allocated since the last look: no process was started, so the table still holds
    // every live process (exited ones linger harmlessly until the next listing; a scan of their
    // fd table just finds nothing). Listing /proc costs far more than this check.
    const lastPid = this.lastPidReader.read();
    if (lastPid !== null && lastPid === this.lastPid) return true;
    const now = performance.now();
    const listingDue = now - this.fullyListedAt >= FULL_LISTING_INTERVAL_MS;
    const started = this.pidsAllocatedSince(lastPid);
    if (started) {
      this.addStarted(started);
      // Forgetting the exited can wait: the listing runs after this lookup, not in its way.
      if (listingDue) this.listSoon();
    } else if (listIfNeeded) {
      await this.listAll();
      this.fullyListedAt = now;
    } else {
      // Too many new pids to read one by one: a listing soon makes the next lookups cheap again.
      if (listingDue) this.listSoon();
      return false;
    }
    this.listedAt = now;
    this.lastPid = lastPid;
    return true;
  }

  /** A full listing in the background, once at a time. */
  private listSoon(): void {
    if (this.listingInBackground) return;
    this.listingInBackground = true;
    setImmediate(() => {
      const startedAt = performance.now();
      const lastPid = this.lastPidReader.read();
      this.listAll()
        .then(() => {
          this.fullyListedAt = startedAt;
          // The listing saw every process up to `lastPid`; a newer look may have gone further.
          if (lastPid !== null && (this.lastPid === null || this.lastPid < lastPid)) {
            this.lastPid = lastPid;
            this.listedAt = startedAt;
          }
        })
        .catch(() => {
          // /proc unreadable for a moment: the next due look tries again.
        })
        .finally(() => {
          this.listingInBackground = false;
        });
    });
  }

  /** The pids allocated since the last look, when there are few of them; null otherwise. */
  private pidsAllocatedSince(lastPid: number | null): number[] | null {
    if (this.lastPid === null || lastPid === null || lastPid < this.lastPid || lastPid - this.lastPid > MAX_PROBED_PIDS) return null;
    return Array.from({ length: lastPid - this.lastPid }, (_, i) => this.lastPid! + 1 + i);
  }

  /** Reads newly allocated pids: processes join the table (threads and the exited do not). */
  private addStarted(pids: readonly number[]): void {
    const added: number[] = [];
    for (const pid of pids) {
      try {
        // A thread's id is a pid too, and /proc/<tid> answers for it: only group leaders are processes.
        if (threadGroupOf(readProcText(`${this.procDir}/${pid}/status`, 'latin1')) !== pid) continue;
        const stat = readProcStat(pid, this.procDir);
        this.setEntry(pid, { ppid: stat.ppid, startTime: stat.startTime });
        added.push(pid);
      } catch {
        // Exited already.
      }
    }
    if (added.length === 0) return;
    // Started since the last look: more recent than every process listed, so they go first
    // (no sort of the whole table).
    const newest = added.sort((a, b) => this.entries.get(b)!.startTime - this.entries.get(a)!.startTime || b - a);
    const fresh = new Set(newest);
    this.pids = [...newest, ...this.pids.filter((pid) => !fresh.has(pid))];
  }

  private async listAll(): Promise<void> {
    // Processes that join during the listing (from a look made meanwhile) are not forgotten.
    const known = new Set(this.entries.keys());
    const listed = listPids(this.procDir);
    let changed = listed.length !== this.entries.size;
    let reads = 0;
    for (const pid of listed) {
      if (this.entries.has(pid)) continue;
      changed = true;
      try {
        const stat = readProcStat(pid, this.procDir);
        this.setEntry(pid, { ppid: stat.ppid, startTime: stat.startTime });
      } catch {
        // Exited between the listing and the read: nothing to remember.
      }
      if (++reads % READS_BETWEEN_YIELDS === 0) await yieldToEventLoop();
    }
    if (changed) {
      const alive = new Set(listed);
      for (const pid of known) if (!alive.has(pid)) this.deleteEntry(pid);
      // Sorted only when the set of processes changed: most listings find the same set.
      this.sortPids();
    }
  }

  /** Entries and the index of children by parent change together. */
  private setEntry(pid: number, entry: ProcessEntry): void {
    this.deleteEntry(pid);
    this.entries.set(pid, entry);
    let siblings = this.children.get(entry.ppid);
    if (!siblings) this.children.set(entry.ppid, (siblings = new Set()));
    siblings.add(pid);
  }

  private deleteEntry(pid: number): void {
    const entry = this.entries.get(pid);
    if (!entry) return;
    this.entries.delete(pid);
    const siblings = this.children.get(entry.ppid);
    siblings?.delete(pid);
    if (siblings?.size === 0) this.children.delete(entry.ppid);
  }

  private sortPids(): void {
    this.pids = [...this.entries.keys()].sort((a, b) => this.entries.get(b)!.startTime - this.entries.get(a)!.startTime || b - a);
  }

  /** Pids from the last listing, most recently started first. */
  get currentPids(): readonly number[] {
    return this.pids;
  }

  parentOf(pid: number): number | undefined {
    return this.entries.get(pid)?.ppid;
  }

  /**
   * When `pid` started (clock ticks after boot), as listed. Right for the process that has the
   * pid now once a look is up to date: a pid handed out again since was read again.
   */
  startTimeOf(pid: number): number | undefined {
    return this.entries.get(pid)?.startTime;
  }

  childrenOf(pid: number): number[] {
    const children: number[] = [];
    for (const child of this.children.get(pid) ?? []) if (child !== pid) children.push(child);
    return children;
  }

  /** The anchor and everything below it, breadth first (as of the last listing). */
  descendantsOf(anchor: number): number[] {
    const out = [anchor];
    const seen = new Set(out);
    for (let i = 0; i < out.length; i++) {
      for (const child of this.children.get(out[i]!) ?? []) {
        if (!seen.has(child)) {
          seen.add(child);
          out.push(child);
        }
      }
    }
    return out;
  }
}
