// What one read of a process's fd table found: the sockets it held at that moment.
//
// Reading an fd table costs a readlink per open file, and a busy client holds many. One read
// answers for every socket of that moment, so it is kept for a short while:
//   - a socket in a snapshot was held by the process when the snapshot was taken (and a
//     socket's inode is not reused while the socket lives): that is evidence of ownership
//     however recent the connection;
//   - a socket missing from a snapshot proves nothing about a socket made after it, so a
//     miss counts only when the snapshot was taken after the connection existed (`notBefore`).
// Under load, one read of a client's table thus answers for all the connections it opened
// meanwhile, where each connection used to pay for a read of its own.
// When a table must be read again to find a socket, the links are read where a new socket most
// likely is first, and the read stops at the socket. Such a partial read adds the socket to the
// snapshot but cannot show absences: only a full read does. Where a new socket most likely is:
// the kernel gives it the lowest free fd number, so it is where a socket that has since closed
// used to be. The snapshots remember where each socket asked about was found; in order:
//   1. numbers that held a socket whose connection has ended (`released`), lowest first;
//   2. numbers that held a socket asked about earlier, earliest first (short connections free
//      their numbers in the order they were made; a release is often heard of only after the
//      client has already reconnected);
// these first few are read without listing the table; then, from a listing,
//   3. numbers not seen before, 4. other sockets, 5. other files.
// With the native addon a read is one call (native-procfs.ts): the same first few, then the
// listing with the numbers last seen holding other files last.
import { readdirSync, readlinkSync } from 'node:fs';
import type { FdLinksRead, NativeProcfs } from './native-procfs.js';
import { errnoOf } from './unresolved.js';

export interface FdTableAnswer {
  held: boolean;
  /** readlink calls this answer cost (0 when a snapshot answered). */
  readlinks: number;
  /** The table (or a link in it) could not be read for lack of permission. */
  permissionDenied: boolean;
}

/** A socket that was asked about, where it was found. */
interface AskedSocket {
  inode: number;
  /** Its connection has ended: the number is probably free, or taken by a newer socket. */
  released: boolean;
}

interface Snapshot {
  /** When the last full read began: every socket held since then and still held was seen. */
  takenAt: number;
  /** Socket inode → the fd number it was read at. */
  sockets: Map<number, string>;
  permissionDenied: boolean;
  /** fd number → socket inode (0 for another kind of file), as last read; null when too many to keep. */
  links: Map<string, number> | null;
  /** fd number → the socket asked about that was found there, in the order they were found. */
  asked: Map<number, AskedSocket>;
  /** The numbers in `links` that hold other kinds of files, worked out once for native reads. */
  otherFiles?: Int32Array;
}

/** What one read of a table found, before it is kept. */
interface TableRead {
  sockets: Map<number, string>;
  links: Map<string, number>;
  /** The numbers open at a read to the end (empty otherwise). */
  open: Set<string>;
  readlinks: number;
  permissionDenied: boolean;
  /** The number where the read stopped at the socket (hinted, or ahead of the rest); null when it read on. */
  stoppedAt: string | null;
  /** The table could not be listed. */
  listFailed: { permission: boolean } | null;
}

const NO_FDS = new Int32Array(0);

/** Above this many open files, a process's links are not kept (the order of reading is plain). */
const MAX_KEPT_LINKS = 4096;
/** Hinted numbers read before the table is listed. */
const HINTS_BEFORE_LISTING = 4;
/** Sockets asked about that are remembered (where they were found), over all processes. */
const MAX_ASKED = 8192;

const SOCKET_LINK_PREFIX = 'socket:[';

/** The inode of an fd link `socket:[N]`, or null for any other kind of file. Pure. */
export function socketInodeOfLink(target: string): number | null {
  if (!target.startsWith(SOCKET_LINK_PREFIX) || !target.endsWith(']')) return null;
  const inode = Number(target.slice(SOCKET_LINK_PREFIX.length, -1));
  return Number.isSafeInteger(inode) && inode > 0 ? inode : null;
}

export class FdSnapshots {
  private readonly snapshots = new Map<number, Snapshot>();
  /** Socket inode asked about → where it was found (for `released`). */
  private readonly askedIn = new Map<number, { pid: number; fd: number }>();

  constructor(
    private readonly procDir = '/proc',
    /** How long a snapshot may be used at all (a process can close or pass on a socket). */
    private readonly maxAgeMs = 2_000,
    private readonly maxSnapshots = 512,
    /** Reads each table in one native call (only for the real /proc). */
    native: NativeProcfs | null = null,
  ) {
    this.native = procDir === '/proc' ? native : null;
  }

  private readonly native: NativeProcfs | null;

  /** Whether `pid` holds socket `inode`, as of a moment no earlier than `notBefore` when it does not. */
  holds(pid: number, inode: number, notBefore: number, now = performance.now()): FdTableAnswer {
    const kept = this.snapshots.get(pid);
    const usable = kept !== undefined && now - kept.takenAt <= this.maxAgeMs ? kept : undefined;
    if (usable) {
      const fd = usable.sockets.get(inode);
      if (fd !== undefined) {
        this.noteAsked(pid, usable, inode, Number(fd));
        return { held: true, readlinks: 0, permissionDenied: false };
      }
      if (usable.takenAt >= notBefore) return { held: false, readlinks: 0, permissionDenied: usable.permissionDenied };
    }
    return this.read(pid, inode, usable, now);
  }

  /**
   * What the kept look at `pid` tells without reading anything: that it holds the socket, that
   * it does not (a look no older than `notBefore`), or else the numbers to read first (none
   * when no usable look is kept: then only a read of the whole table can tell).
   */
  recall(pid: number, inode: number, notBefore: number, now = performance.now()): { held: boolean } | { hints: number[] } {
    const kept = this.snapshots.get(pid);
    if (kept === undefined || now - kept.takenAt > this.maxAgeMs) return { hints: [] };
    const fd = kept.sockets.get(inode);
    if (fd !== undefined) {
      this.noteAsked(pid, kept, inode, Number(fd));
      return { held: true };
    }
    if (kept.takenAt >= notBefore) return { held: false };
    return { hints: hintedNumbers(kept.asked).slice(0, HINTS_BEFORE_LISTING).map(Number) };
  }

  /**
   * The numbers to read last in a read of `pid`'s table up to a socket (those last seen holding
   * other kinds of files), and whether such a read can stop at the socket (only with a usable
   * look to add to; else it must read to the end).
   */
  readingPlan(pid: number, now = performance.now()): { list: 'to-socket' | 'all'; last: Int32Array } {
    const kept = this.snapshots.get(pid);
    return kept !== undefined && now - kept.takenAt <= this.maxAgeMs ? { list: 'to-socket', last: otherFilesOf(kept) } : { list: 'all', last: NO_FDS };
  }

  /** A read of `pid`'s table made elsewhere (natively, as `recall` and `readingPlan` said), begun at `startedAt`: kept as read() keeps its own. */
  absorb(pid: number, inode: number, read: FdLinksRead, startedAt: number): FdTableAnswer {
    const kept = this.snapshots.get(pid);
    const previous = kept !== undefined && startedAt - kept.takenAt <= this.maxAgeMs ? kept : undefined;
    return this.keepRead(pid, inode, previous, startedAt, tableOf(read));
  }

  /**
   * The connection on `inode` has ended: the number that held it in its owner is probably free
   * now, and the likeliest place of that process's next socket.
   */
  released(inode: number): void {
    const where = this.askedIn.get(inode);
    if (where === undefined) return;
    this.askedIn.delete(inode);
    const asked = this.snapshots.get(where.pid)?.asked.get(where.fd);
    if (asked?.inode === inode) asked.released = true;
  }

  /** Reads the table, likeliest places first, up to the socket; a read to the end renews the snapshot. */
  private read(pid: number, inode: number, previous: Snapshot | undefined, startedAt: number): FdTableAnswer {
    const hinted = previous ? hintedNumbers(previous.asked) : [];
    const table = this.native ? this.readNatively(pid, inode, previous, hinted) : this.readLinks(pid, inode, previous, hinted);
    return this.keepRead(pid, inode, previous, startedAt, table);
  }

  /** What a read found, kept: added to the previous look when it stopped early, else a new look. */
  private keepRead(pid: number, inode: number, previous: Snapshot | undefined, startedAt: number, table: TableRead): FdTableAnswer {
    if (table.stoppedAt !== null) {
      if (previous) return this.stopEarly(pid, previous, inode, table.stoppedAt, table.sockets, table.links, table.readlinks);
      // Stopped at the socket with no look to add to (it expired meanwhile): the socket is held,
      // but a partial read cannot stand for the table.
      return { held: true, readlinks: table.readlinks, permissionDenied: false };
    }
    if (table.listFailed) {
      const snapshot: Snapshot = { takenAt: startedAt, sockets: new Map(), permissionDenied: table.listFailed.permission, links: null, asked: new Map() };
      this.keep(pid, snapshot);
      return { held: false, readlinks: table.readlinks, permissionDenied: snapshot.permissionDenied };
    }
    // Read to the end: a new snapshot, which keeps what the last one knew of asked sockets
    // whose numbers still hold them.
    const { links, sockets, open } = table;
    const asked = new Map<number, AskedSocket>();
    for (const [fd, socket] of previous?.asked ?? this.snapshots.get(pid)?.asked ?? []) {
      const stillThere = links.get(String(fd)) === socket.inode;
      const freedSince = socket.released && !open.has(String(fd));
      if (stillThere || freedSince) asked.set(fd, socket);
    }
    const snapshot: Snapshot = { takenAt: startedAt, sockets, permissionDenied: table.permissionDenied, links: open.size <= MAX_KEPT_LINKS ? links : null, asked };
    this.keep(pid, snapshot);
    const found = sockets.get(inode);
    if (found !== undefined) this.noteAsked(pid, snapshot, inode, Number(found));
    return { held: found !== undefined, readlinks: table.readlinks, permissionDenied: table.permissionDenied && found === undefined };
  }

  /** One link at a time from JavaScript: the hinted numbers, then the listing in likeliest order. */
  private readLinks(pid: number, inode: number, previous: Snapshot | undefined, hinted: readonly string[]): TableRead {
    const dir = `${this.procDir}/${pid}/fd`;
    const table: TableRead = { sockets: new Map(), links: new Map(), open: new Set(), readlinks: 0, permissionDenied: false, stoppedAt: null, listFailed: null };
    /** Reads one link; true when it is the socket. */
    const readLink = (fd: string): boolean => {
      table.readlinks += 1;
      let found: number | null = null;
      try {
        found = socketInodeOfLink(readlinkSync(`${dir}/${fd}`));
      } catch (err) {
        // Closed (ENOENT), or not ours to read.
        if (isPermissionError(err)) table.permissionDenied = true;
        return false;
      }
      table.links.set(fd, found ?? 0);
      if (found !== null) table.sockets.set(found, fd);
      return found === inode;
    };
    const tried = new Set<string>();
    if (previous) {
      // The hinted numbers first, without a listing; on a hit this read is done.
      for (const fd of hinted.slice(0, HINTS_BEFORE_LISTING)) {
        tried.add(fd);
        if (readLink(fd)) return { ...table, stoppedAt: fd };
      }
    }
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      return { ...table, listFailed: { permission: isPermissionError(err) } };
    }
    for (const fd of likeliestFirst(fds, previous?.links ?? null, hinted)) {
      if (tried.has(fd)) continue;
      if (readLink(fd) && previous) return { ...table, stoppedAt: fd };
    }
    return { ...table, open: new Set(fds) };
  }

  /** The same in one call of the native addon: no round trip per link. */
  private readNatively(pid: number, inode: number, previous: Snapshot | undefined, hinted: readonly string[]): TableRead {
    const read = this.native!.fdLinks(pid, inode, previous ? hinted.slice(0, HINTS_BEFORE_LISTING).map(Number) : [], previous ? otherFilesOf(previous) : NO_FDS, previous !== undefined);
    return tableOf(read);
  }

  /** Found before the end: what was read adds to the last full snapshot, whose absences still hold. */
  private stopEarly(pid: number, previous: Snapshot, inode: number, fd: string, sockets: Map<number, string>, links: Map<string, number>, readlinks: number): FdTableAnswer {
    for (const [socket, number] of sockets) previous.sockets.set(socket, number);
    for (const [number, link] of links) {
      previous.links?.set(number, link);
      // A hinted number that now holds something else is no longer a hint for its old socket.
      const asked = previous.asked.get(Number(number));
      if (asked && asked.inode !== link) previous.asked.delete(Number(number));
    }
    this.noteAsked(pid, previous, inode, Number(fd));
    return { held: true, readlinks, permissionDenied: false };
  }

  /** Remembers where a socket asked about was found (newest last). */
  private noteAsked(pid: number, snapshot: Snapshot, inode: number, fd: number): void {
    snapshot.asked.delete(fd);
    snapshot.asked.set(fd, { inode, released: false });
    // Oldest forgotten first.
    this.askedIn.delete(inode);
    this.askedIn.set(inode, { pid, fd });
    for (const [oldest] of this.askedIn) {
      if (this.askedIn.size <= MAX_ASKED) break;
      this.askedIn.delete(oldest);
    }
  }

  private keep(pid: number, snapshot: Snapshot): void {
    this.snapshots.delete(pid);
    this.snapshots.set(pid, snapshot);
    // Oldest first in insertion order: drop from the front.
    for (const [oldest] of this.snapshots) {
      if (this.snapshots.size <= this.maxSnapshots) break;
      this.snapshots.delete(oldest);
    }
  }
}

/** Numbers of released sockets (lowest first), then of the other asked-about sockets (earliest first). Pure. */
export function hintedNumbers(asked: ReadonlyMap<number, AskedSocket>): string[] {
  const released: number[] = [];
  const open: number[] = [];
  for (const [fd, socket] of asked) (socket.released ? released : open).push(fd);
  return [...released.sort((a, b) => a - b), ...open].map(String);
}

/** Hinted numbers (that are open), then numbers not seen before, then other sockets, then the rest. Pure. */
export function likeliestFirst(fds: readonly string[], links: ReadonlyMap<string, number> | null, hinted: readonly string[] = []): string[] {
  const open = new Set(fds);
  const first = hinted.filter((fd) => open.has(fd));
  const taken = new Set(first);
  if (!links) return [...first, ...fds.filter((fd) => !taken.has(fd))];
  const unseen: string[] = [];
  const sockets: string[] = [];
  const others: string[] = [];
  for (const fd of fds) {
    if (taken.has(fd)) continue;
    const link = links.get(fd);
    if (link === undefined) unseen.push(fd);
    else if (link !== 0) sockets.push(fd);
    else others.push(fd);
  }
  return [...first, ...unseen, ...sockets, ...others];
}

/** Numbers last seen holding other kinds of files: a native read reads them last. */
function otherFilesOf(snapshot: Snapshot): Int32Array {
  if (!snapshot.links) return NO_FDS;
  if (!snapshot.otherFiles) {
    const others: number[] = [];
    for (const [fd, link] of snapshot.links) if (link === 0) others.push(Number(fd));
    snapshot.otherFiles = Int32Array.from(others);
  }
  return snapshot.otherFiles;
}

/** A native read as the snapshots keep it. Pure. */
function tableOf(read: FdLinksRead): TableRead {
  const table: TableRead = { sockets: new Map(), links: new Map(), open: new Set(), readlinks: read.fds.length, permissionDenied: read.permissionDenied, stoppedAt: null, listFailed: null };
  for (let i = 0; i < read.fds.length; i++) {
    const fd = String(read.fds[i]);
    const link = read.inodes[i]!;
    table.links.set(fd, link);
    if (link !== 0) table.sockets.set(link, fd);
    if (read.complete) table.open.add(fd);
  }
  if (read.found !== null && !read.complete) table.stoppedAt = String(read.found);
  else if (read.listError !== null && read.found === null) table.listFailed = { permission: read.listError === 'EACCES' || read.listError === 'EPERM' };
  return table;
}

function isPermissionError(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'EACCES' || code === 'EPERM';
}
