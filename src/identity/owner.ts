// Which processes hold a socket: the ones with a `socket:[inode]` link in /proc/<pid>/fd.
//
// Reading every process's fd table is the expensive part of resolution (a readlink per open
// file), so the search looks where the owner most likely is and stops early:
//   1. inside a sandbox, the anchor's descendants, all of them (the complete owner set there);
//   2. otherwise the pids that owned recent connections, then every pid, most recently started
//      first, up to the first holder; then the holder's parent, children and siblings, which is
//      where a socket shared through fork lives (as of a process listing at most a few
//      milliseconds old: like any point-in-time look, it cannot see a fork that comes later).
// `exhaustive` reads every process instead, for callers that must also catch a socket passed
// to an unrelated process.
import { readdirSync, readlinkSync } from 'node:fs';
import { yieldToEventLoop, type ProcessTable } from './process-table.js';
import { errnoOf, UnresolvedError } from './unresolved.js';

export interface OwnerSearch {
  inode: number;
  table: ProcessTable;
  anchorPid?: number;
  /** Pids that owned recent connections: looked at first. */
  recentOwners: readonly number[];
  /** The resolver's own process (it holds the accepted ends): looked at last. */
  selfPid: number;
  exhaustive: boolean;
  /** How old a process listing may be when a recent owner holds the socket (default 10 ms). */
  listingMaxAgeMs?: number;
  procDir?: string;
}

/** A process's siblings are only worth reading when there are few of them. */
const MAX_SIBLINGS = 32;
const DEFAULT_LISTING_MAX_AGE_MS = 10;
const READLINKS_BETWEEN_YIELDS = 256;

class FdScanner {
  private readlinks = 0;
  private readonly scanned = new Map<number, boolean>();
  permissionDenied = 0;

  constructor(
    private readonly target: string,
    private readonly procDir: string,
  ) {}

  /** Whether `pid` holds the socket; false when it is gone or unreadable. Cached per search. */
  async holds(pid: number): Promise<boolean> {
    const known = this.scanned.get(pid);
    if (known !== undefined) return known;
    const found = this.scan(pid);
    this.scanned.set(pid, found);
    if (this.readlinks >= READLINKS_BETWEEN_YIELDS) {
      this.readlinks = 0;
      await yieldToEventLoop();
    }
    return found;
  }

  private scan(pid: number): boolean {
    const dir = `${this.procDir}/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      this.note(err);
      return false;
    }
    for (const fd of fds) {
      this.readlinks += 1;
      try {
        if (readlinkSync(`${dir}/${fd}`) === this.target) return true;
      } catch (err) {
        this.note(err);
      }
    }
    return false;
  }

  private note(err: unknown): void {
    const code = errnoOf(err);
    if (code === 'EACCES' || code === 'EPERM') this.permissionDenied += 1;
  }
}

/** Pids holding the socket (at least one), or throws UnresolvedError (no_owner / permission). */
export async function findSocketOwners(search: OwnerSearch): Promise<number[]> {
  const procDir = search.procDir ?? '/proc';
  const scanner = new FdScanner(`socket:[${search.inode}]`, procDir);
  const owners = async (candidates: Iterable<number>): Promise<number[]> => {
    const out: number[] = [];
    for (const pid of candidates) if (await scanner.holds(pid)) out.push(pid);
    return out;
  };

  if (search.exhaustive) {
    const all = await owners(await search.table.refresh());
    if (all.length > 0) return all;
    throw noOwner(scanner);
  }

  // A process that owned a recent connection usually owns this one too; when it does, a
  // process listing a few milliseconds old is recent enough for the rest.
  let first: number | undefined;
  for (const pid of search.recentOwners) {
    if (pid !== search.selfPid && (await scanner.holds(pid))) {
      first = pid;
      break;
    }
  }
  const pids = await search.table.refresh(first === undefined ? 0 : search.listingMaxAgeMs ?? DEFAULT_LISTING_MAX_AGE_MS);

  if (search.anchorPid !== undefined) {
    const inSandbox = await owners(search.table.descendantsOf(search.anchorPid));
    if (inSandbox.length > 0) return inSandbox;
  }

  if (first === undefined) {
    for (const pid of [...pids.filter((p) => p !== search.selfPid), search.selfPid]) {
      if (await scanner.holds(pid)) {
        first = pid;
        break;
      }
    }
  }
  if (first === undefined) throw noOwner(scanner);

  const family = new Set<number>();
  const parent = search.table.parentOf(first);
  if (parent !== undefined && parent > 1) {
    family.add(parent);
    const siblings = search.table.childrenOf(parent);
    if (siblings.length <= MAX_SIBLINGS) for (const sibling of siblings) family.add(sibling);
  }
  for (const child of search.table.childrenOf(first)) family.add(child);
  family.delete(first);
  family.delete(search.selfPid);
  return [first, ...(await owners(family))];
}

function noOwner(scanner: FdScanner): UnresolvedError {
  return scanner.permissionDenied > 0
    ? new UnresolvedError('permission', `no readable process holds the socket (${scanner.permissionDenied} fd tables unreadable)`)
    : new UnresolvedError('no_owner', 'no process holds the socket');
}
