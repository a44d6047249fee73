// Which processes hold a socket: the ones with a `socket:[inode]` link in /proc/<pid>/fd.
//
// Reading every process's fd table is the expensive part of resolution (a readlink per open
// file), so the search looks where the owner most likely is and stops early:
//   1. inside a sandbox, the anchor's descendants, all of them (the complete owner set there);
//   2. otherwise the pids that owned recent connections, then every pid, most recently started
//      first, up to the first holder; then the holder's parent, children and siblings, which is
//      where a socket shared through fork lives (as of a look at the process tree made after
//      the connection existed: like any point-in-time look, it cannot see a fork that comes later).
//      Children and siblings running the holder's own executable do not count as co-holders:
//      they could not make the owner ambiguous (that takes another executable), and the
//      identity's binaries (executable and ancestors' executables) would be the same set. A
//      relative's executable is read only once it is found holding the socket: its fd table
//      is kept between lookups, its executable would be read again at each.
//      The parent is always read, so a fork without exec still resolves to the fork parent.
//      A relative can share the socket only through the fork that made it a relative (passing
//      it on is what `exhaustive` is for), so a look at its fd table taken after that fork
//      answers: if the socket was shared then, the relative still has it unless it closed it.
//      For a child or sibling that fork is its own start; for the parent, the holder's. Such a
//      look is usually kept from an earlier lookup, so the relatives cost no reads at all.
// `exhaustive` reads every process instead, for callers that must also catch a socket passed
// to an unrelated process.
import type { FdSnapshots } from './fd-snapshots.js';
import type { KernelRelatives, Relatives } from './kernel-relatives.js';
import { yieldToEventLoop, type ProcessTable } from './process-table.js';
import { UnresolvedError } from './unresolved.js';

export interface OwnerSearch {
  inode: number;
  table: ProcessTable;
  anchorPid?: number;
  /** Pids that owned recent connections: looked at first. */
  recentOwners: readonly number[];
  /** The resolver's own process (it holds the accepted ends): looked at last. */
  selfPid: number;
  /** A process's executable path, or undefined when it cannot be read. */
  executableOf: (pid: number) => string | undefined;
  exhaustive: boolean;
  /** Parents and children read from the kernel per question, when it offers them. */
  kernel: KernelRelatives | null;
  /** Fd tables read by earlier searches (see fd-snapshots.ts). */
  snapshots: FdSnapshots;
  /** A moment at which the socket already existed (e.g. when resolution began). */
  notBefore: number;
  /** A moment no earlier than a process's start (read fresh); undefined when unknown. */
  notBeforeStartOf?: (pid: number) => number | undefined;
  /** The same from a start time in clock ticks after boot (as the process table lists it); undefined when unknown. */
  notBeforeStart?: (startTime: number) => number | undefined;
  /**
   * Looks for the socket at once in all the recent owners, where their earlier sockets were
   * (one native call); the holder found, or undefined (then they are read one by one).
   */
  probeRecent?: (candidates: readonly number[]) => number | undefined;
}

/** A process's siblings are only worth reading when there are few of them. */
const MAX_SIBLINGS = 32;
const READLINKS_BETWEEN_YIELDS = 256;

/** One search's view of the fd tables: snapshots where they can tell, fresh reads otherwise. */
class FdScanner {
  private readlinks = 0;
  permissionDenied = 0;

  constructor(
    private readonly inode: number,
    private readonly snapshots: FdSnapshots,
    /** When the connection was already known to exist: older snapshots cannot show its absence. */
    private readonly notBefore: number,
  ) {}

  /** Whether `pid` holds the socket; false when it is gone or unreadable. A look no older than `notBefore` may say no. */
  async holds(pid: number, notBefore = this.notBefore): Promise<boolean> {
    const answer = this.snapshots.holds(pid, this.inode, notBefore);
    if (answer.permissionDenied && !answer.held) this.permissionDenied += 1;
    this.readlinks += answer.readlinks;
    if (this.readlinks >= READLINKS_BETWEEN_YIELDS) {
      this.readlinks = 0;
      await yieldToEventLoop();
    }
    return answer.held;
  }
}

export interface SocketOwners {
  /** Pids holding the socket (at least one). */
  pids: number[];
  /** Parents and children as this search saw them. */
  relatives: Relatives;
}

/** Who holds the socket, or throws UnresolvedError (no_owner / permission). */
export async function findSocketOwners(search: OwnerSearch): Promise<SocketOwners> {
  const scanner = new FdScanner(search.inode, search.snapshots, search.notBefore);
  const owners = async (candidates: Iterable<number>): Promise<number[]> => {
    const out: number[] = [];
    for (const pid of candidates) if (await scanner.holds(pid)) out.push(pid);
    return out;
  };

  if (search.exhaustive) {
    const all = await owners(await search.table.refresh());
    if (all.length > 0) return { pids: all, relatives: search.table };
    throw noOwner(scanner);
  }

  // A process that owned a recent connection usually owns this one too.
  const recent = search.recentOwners.filter((pid) => pid !== search.selfPid);
  let first = recent.length > 0 ? search.probeRecent?.(recent) : undefined;
  for (const pid of first === undefined ? recent : []) {
    if (await scanner.holds(pid)) {
      first = pid;
      break;
    }
  }
  // Parents and children from the process table when bringing it up to date is cheap (few or
  // no processes started since the last look), else from the kernel's children files when it
  // has them (cheaper than listing every process), else from a new listing.
  const listed = async (): Promise<Relatives> => {
    if (await search.table.refreshUnlessCostly()) return search.table;
    if (search.kernel) return search.kernel.asOf(search.notBefore);
    await search.table.refresh();
    return search.table;
  };

  if (search.anchorPid !== undefined) {
    const relatives = await listed();
    const inSandbox = await owners(relatives.descendantsOf(search.anchorPid));
    if (inSandbox.length > 0) return { pids: inSandbox, relatives };
  }

  if (first === undefined) {
    const pids = await search.table.refresh(0);
    for (const pid of [...pids.filter((p) => p !== search.selfPid), search.selfPid]) {
      if (await scanner.holds(pid)) {
        first = pid;
        break;
      }
    }
  }
  if (first === undefined) throw noOwner(scanner);

  const relatives = await listed();
  const shared: number[] = [];
  const ownExecutable = search.executableOf(first);
  for (const { pid, forkedAs, parent } of forkFamily(first, search, relatives)) {
    if (!(await scanner.holds(pid, startOf(forkedAs, search, relatives)))) continue;
    // A child or sibling running the holder's own executable cannot make the owner ambiguous.
    // Asked only of a holder: its fd table is kept for a while, its executable would be read
    // at every lookup (a busy client's siblings are asked about at each of its connections).
    // Unreadable executables count as different ones: they might be anything.
    if (!parent && ownExecutable !== undefined && search.executableOf(pid) === ownExecutable) continue;
    shared.push(pid);
  }
  return { pids: [first, ...shared], relatives };
}

/**
 * A moment no earlier than `pid`'s start: from an up-to-date process table when it lists the
 * pid (no read), else read now; the connection's own moment when neither can tell.
 */
function startOf(pid: number, search: OwnerSearch, relatives: Relatives): number {
  const listed = relatives.startTimeOf?.(pid);
  const fromTable = listed === undefined ? undefined : search.notBeforeStart?.(listed);
  return fromTable ?? search.notBeforeStartOf?.(pid) ?? search.notBefore;
}

/** A relative, the process whose start is the fork that made it one (the holder, for the parent), and whether it is the parent. */
interface Relative {
  pid: number;
  forkedAs: number;
  parent: boolean;
}

/** Where a socket shared through fork may also live: the parent, children and siblings. */
function forkFamily(owner: number, search: OwnerSearch, relatives: Relatives): Relative[] {
  const family: Relative[] = [];
  const parent = relatives.parentOf(owner);
  if (parent !== undefined && parent > 1 && parent !== search.selfPid) family.push({ pid: parent, forkedAs: owner, parent: true });
  const siblings = parent !== undefined && parent > 1 ? relatives.childrenOf(parent) : [];
  for (const pid of [...(siblings.length <= MAX_SIBLINGS ? siblings : []), ...relatives.childrenOf(owner)]) {
    if (pid === owner || pid === search.selfPid || family.some((r) => r.pid === pid)) continue;
    family.push({ pid, forkedAs: pid, parent: false });
  }
  return family;
}

function noOwner(scanner: FdScanner): UnresolvedError {
  return scanner.permissionDenied > 0
    ? new UnresolvedError('permission', `no readable process holds the socket (${scanner.permissionDenied} fd tables unreadable)`)
    : new UnresolvedError('no_owner', 'no process holds the socket');
}
