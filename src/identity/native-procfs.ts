// The owner search's procfs reads done in the native addon (native/sock-diag.c, "procfs reads"):
// a whole fd table, or a process with its parents (stat, executable and the executable's
// fingerprint), in one call where JavaScript pays a round trip per link or file; and recent
// owners held open (pinned), so that finding one of them again costs a few reads through files
// that cannot reach another process, whatever pids are reused. Absent (no compiler, an addon
// built before these functions), callers read procfs themselves.
import { constants } from 'node:os';
import { loadSockDiagAddon } from './native-sock-diag.js';
import { parseExeLink, type ExecutablePath } from './process-info.js';

interface ProcfsAddon {
  fdLinks(pid: number, inode: number, hints: Int32Array, last: Int32Array, stopAtSocket: boolean): Float64Array;
  chain(pid: number, levels: number, anchorPid: number): Array<number | string | null>;
  pin(pid: number): [dirfd: number, statfd: number, ppid: number, startTime: number];
  identify(
    inode: number,
    dirfds: Int32Array,
    statfds: Int32Array,
    hints: Int32Array,
    hintCounts: Int32Array,
    last: Int32Array,
    listMode: number,
  ): [index: number, reads: Float64Array[], ppid: number, exePath: string | null, fingerprint: string | null, exeError: number];
  readPinned(dirfd: number, statfd: number): [ppid: number, exePath: string | null, fingerprint: string | null, exeError: number];
  close(fd: number): void;
}

/** A process held open (see pin in sock-diag.c): reads through it cannot reach another process that reuses its pid. */
export interface PinnedProcess {
  pid: number;
  dirfd: number;
  statfd: number;
  startTime: number;
  /** Its executable's link and fingerprint as last read together (see identify). */
  exe?: { link: string; fingerprint: string };
}

/** One process as one read saw it. */
export interface ProcessRead {
  pid: number;
  ppid: number;
  /** Clock ticks after boot: with the pid, it names one process across pid reuse (not across exec). */
  startTime: number;
  /** Null when the executable could not be read (see exeError). */
  exe: ExecutablePath | null;
  /** "dev:ino:size:mtimeNs:ctimeNs" of the file `exe` names (see integrity.ts). */
  fingerprint: string | null;
  /** Why `exe` is null: an errno name, or 'none' for a live process without one (kernel thread, zombie). */
  exeError: string | null;
}

/** What one read of an fd table found. */
export interface FdLinksRead {
  /** A link (or the table) was not ours to read. */
  permissionDenied: boolean;
  /** Why the table could not be listed (an errno name); null when it was. */
  listError: string | null;
  /** The fd number holding the socket asked about, or null. */
  found: number | null;
  /** Every open fd was read (not stopped at the socket, not only hints). */
  complete: boolean;
  /** fd numbers and what they held (a socket's inode, 0 for another kind of file), in reading order. */
  fds: number[];
  inodes: number[];
}

const CHAIN_FIELDS = 6;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, code]) => [code, name]));

function errnoName(code: number): string {
  return errnoNames.get(code) ?? `E${code}`;
}

/** An Error shaped like Node's fs errors (a `code`), so callers map it as they map those. */
function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${message}: ${code}`), { code });
}

function parseLinks(raw: Float64Array): FdLinksRead {
  const fds: number[] = [];
  const inodes: number[] = [];
  for (let i = 4; i + 1 < raw.length; i += 2) {
    fds.push(raw[i]!);
    inodes.push(raw[i + 1]!);
  }
  return {
    permissionDenied: raw[0] === 1,
    listError: raw[1] ? errnoName(raw[1]) : null,
    found: raw[2]! >= 0 ? raw[2]! : null,
    complete: raw[3] === 1,
    fds,
    inodes,
  };
}

function parseChain(raw: Array<number | string | null>): ProcessRead[] {
  const out: ProcessRead[] = [];
  for (let i = 0; i + CHAIN_FIELDS <= raw.length; i += CHAIN_FIELDS) {
    const exeError = raw[i + 5] as number;
    out.push({
      pid: raw[i] as number,
      ppid: raw[i + 1] as number,
      startTime: raw[i + 2] as number,
      exe: typeof raw[i + 3] === 'string' ? parseExeLink(raw[i + 3] as string) : null,
      fingerprint: (raw[i + 4] as string | null) ?? null,
      exeError: exeError === 0 ? null : exeError < 0 ? 'none' : errnoName(exeError),
    });
  }
  return out;
}

function pinnedRead(pinned: PinnedProcess, [ppid, exePath, fingerprint, exeError]: [number, string | null, string | null, number]): ProcessRead | null {
  // Link and fingerprint were read one after the other: only as they were before is the pair
  // sure to describe one file (an exec between the two reads would mix two).
  const unchanged = exeError === 0 && pinned.exe !== undefined && pinned.exe.link === exePath && pinned.exe.fingerprint === fingerprint;
  if (ppid < 0 || !unchanged) return null;
  return { pid: pinned.pid, ppid, startTime: pinned.startTime, exe: parseExeLink(exePath!), fingerprint, exeError: null };
}

export class NativeProcfs {
  /** Reads of a process by pid (with its parents or not): what a lookup pays per process it asks about. */
  chainReads = 0;

  private constructor(private readonly addon: ProcfsAddon) {}

  /** The native reads, or null when the addon is absent or built without them. */
  static load(): NativeProcfs | null {
    const addon = loadSockDiagAddon() as (ReturnType<typeof loadSockDiagAddon> & Partial<ProcfsAddon>) | null;
    if (!addon || typeof addon.fdLinks !== 'function' || typeof addon.chain !== 'function' || typeof addon.pin !== 'function' || typeof addon.readPinned !== 'function') return null;
    return new NativeProcfs(addon as unknown as ProcfsAddon);
  }

  /** Reads /proc/<pid>/fd: `hints` first (a hit there ends the read), `last` last; with stopAtSocket, up to the socket. */
  fdLinks(pid: number, inode: number, hints: readonly number[], last: Int32Array, stopAtSocket: boolean): FdLinksRead {
    return parseLinks(this.addon.fdLinks(pid, inode, Int32Array.from(hints), last, stopAtSocket));
  }

  /**
   * `pid` and its parents, nearest first, up to `levels` entries (see sock-diag.c for where the
   * chain stops). Throws an fs-like error (code ENOENT/ESRCH/EACCES) when `pid` cannot be read.
   */
  chain(pid: number, levels: number, anchorPid: number | undefined): ProcessRead[] {
    this.chainReads++;
    try {
      return parseChain(this.addon.chain(pid, levels, anchorPid ?? 0));
    } catch (err) {
      throw fsError(errnoName(Number(String((err as { code?: unknown }).code).slice(1))), `reading /proc/${pid}`);
    }
  }

  /** Holds `pid` open; throws an fs-like error when it is gone. */
  pin(pid: number): PinnedProcess {
    try {
      const [dirfd, statfd, , startTime] = this.addon.pin(pid);
      return { pid, dirfd, statfd, startTime };
    } catch (err) {
      throw fsError(errnoName(Number(String((err as { code?: unknown }).code).slice(1))), `reading /proc/${pid}`);
    }
  }

  unpin(pinned: PinnedProcess): void {
    this.addon.close(pinned.statfd);
    this.addon.close(pinned.dirfd);
  }

  /**
   * Looks for socket `inode` in pinned processes, in order: each at its hinted fd numbers; the
   * first also, past its hints, through its whole table (`list: 'all'`) or up to the socket
   * (`'to-socket'`, `last` read last as in fdLinks). What each read found, and the holder as it is
   * now (process null when it exited, or its executable changed: then it is for the caller to
   * read); holder null when none holds the socket.
   */
  identify(
    inode: number,
    candidates: ReadonlyArray<{ pinned: PinnedProcess; hints: readonly number[] }>,
    first: { list: 'none' | 'to-socket' | 'all'; last: Int32Array },
  ): { reads: Array<{ pid: number; read: FdLinksRead }>; holder: { pid: number; process: ProcessRead | null } | null } {
    const hints: number[] = [];
    for (const candidate of candidates) hints.push(...candidate.hints);
    const [index, reads, ...now] = this.addon.identify(
      inode,
      Int32Array.from(candidates, (c) => c.pinned.dirfd),
      Int32Array.from(candidates, (c) => c.pinned.statfd),
      Int32Array.from(hints),
      Int32Array.from(candidates, (c) => c.hints.length),
      first.last,
      first.list === 'all' ? 2 : first.list === 'to-socket' ? 1 : 0,
    );
    return {
      reads: reads.map((read, i) => ({ pid: candidates[i]!.pinned.pid, read: parseLinks(read) })),
      holder: index < 0 ? null : { pid: candidates[index]!.pinned.pid, process: pinnedRead(candidates[index]!.pinned, now) },
    };
  }

  /** A pinned process as it is now; null when it exited, or its executable changed (then it is for the caller to read). */
  readPinned(pinned: PinnedProcess): ProcessRead | null {
    return pinnedRead(pinned, this.addon.readPinned(pinned.dirfd, pinned.statfd));
  }
}
