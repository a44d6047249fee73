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
// likely is first (fd numbers not seen before, then numbers that held a socket: a closed
// socket's number is the one the next socket gets) and the read stops at the socket. Such a
// partial read adds the socket to the snapshot but cannot show absences: only a full read does.
import { readdirSync, readlinkSync } from 'node:fs';
import { errnoOf } from './unresolved.js';

export interface FdTableAnswer {
  held: boolean;
  /** readlink calls this answer cost (0 when a snapshot answered). */
  readlinks: number;
  /** The table (or a link in it) could not be read for lack of permission. */
  permissionDenied: boolean;
}

interface Snapshot {
  /** When the last full read began: every socket held since then and still held was seen. */
  takenAt: number;
  sockets: Set<number>;
  permissionDenied: boolean;
  /** fd number → socket inode (0 for another kind of file), as last read; null when too many to keep. */
  links: Map<string, number> | null;
}

/** Above this many open files, a process's links are not kept (the order of reading is plain). */
const MAX_KEPT_LINKS = 4096;

const SOCKET_LINK_PREFIX = 'socket:[';

/** The inode of an fd link `socket:[N]`, or null for any other kind of file. Pure. */
export function socketInodeOfLink(target: string): number | null {
  if (!target.startsWith(SOCKET_LINK_PREFIX) || !target.endsWith(']')) return null;
  const inode = Number(target.slice(SOCKET_LINK_PREFIX.length, -1));
  return Number.isSafeInteger(inode) && inode > 0 ? inode : null;
}

export class FdSnapshots {
  private readonly snapshots = new Map<number, Snapshot>();

  constructor(
    private readonly procDir = '/proc',
    /** How long a snapshot may be used at all (a process can close or pass on a socket). */
    private readonly maxAgeMs = 2_000,
    private readonly maxSnapshots = 512,
  ) {}

  /** Whether `pid` holds socket `inode`, as of a moment no earlier than `notBefore` when it does not. */
  holds(pid: number, inode: number, notBefore: number, now = performance.now()): FdTableAnswer {
    const kept = this.snapshots.get(pid);
    const usable = kept !== undefined && now - kept.takenAt <= this.maxAgeMs ? kept : undefined;
    if (usable) {
      if (usable.sockets.has(inode)) return { held: true, readlinks: 0, permissionDenied: false };
      if (usable.takenAt >= notBefore) return { held: false, readlinks: 0, permissionDenied: usable.permissionDenied };
    }
    return this.read(pid, inode, usable, now);
  }

  /** Reads the table, likeliest places first, up to the socket; a read to the end renews the snapshot. */
  private read(pid: number, inode: number, previous: Snapshot | undefined, startedAt: number): FdTableAnswer {
    const dir = `${this.procDir}/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      const snapshot: Snapshot = { takenAt: startedAt, sockets: new Set(), permissionDenied: isPermissionError(err), links: null };
      this.keep(pid, snapshot);
      return { held: false, readlinks: 0, permissionDenied: snapshot.permissionDenied };
    }
    const links = fds.length <= MAX_KEPT_LINKS ? new Map<string, number>() : null;
    const sockets = new Set<number>();
    let permissionDenied = false;
    let readlinks = 0;
    for (const fd of likeliestFirst(fds, previous?.links ?? null)) {
      readlinks += 1;
      let found: number | null = null;
      try {
        found = socketInodeOfLink(readlinkSync(`${dir}/${fd}`));
      } catch (err) {
        // Closed since the listing (ENOENT), or not ours to read.
        if (isPermissionError(err)) permissionDenied = true;
        continue;
      }
      links?.set(fd, found ?? 0);
      if (found === null) continue;
      sockets.add(found);
      if (found === inode && previous) {
        // Stopped early: what was read adds to the last full snapshot, whose absences still hold.
        for (const socket of sockets) previous.sockets.add(socket);
        if (previous.links && links) for (const [number, link] of links) previous.links.set(number, link);
        return { held: true, readlinks, permissionDenied: false };
      }
    }
    this.keep(pid, { takenAt: startedAt, sockets, permissionDenied, links });
    return { held: sockets.has(inode), readlinks, permissionDenied: permissionDenied && !sockets.has(inode) };
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

/** fd numbers not seen before, then those that held a socket, then the rest. Pure. */
export function likeliestFirst(fds: readonly string[], links: ReadonlyMap<string, number> | null): string[] {
  if (!links) return [...fds];
  const unseen: string[] = [];
  const sockets: string[] = [];
  const others: string[] = [];
  for (const fd of fds) {
    const link = links.get(fd);
    if (link === undefined) unseen.push(fd);
    else if (link !== 0) sockets.push(fd);
    else others.push(fd);
  }
  return [...unseen, ...sockets, ...others];
}

function isPermissionError(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'EACCES' || code === 'EPERM';
}
