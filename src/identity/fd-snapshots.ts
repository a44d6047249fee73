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
  takenAt: number;
  sockets: Set<number>;
  permissionDenied: boolean;
}

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
    if (kept && now - kept.takenAt <= this.maxAgeMs) {
      if (kept.sockets.has(inode)) return { held: true, readlinks: 0, permissionDenied: false };
      if (kept.takenAt >= notBefore) return { held: false, readlinks: 0, permissionDenied: kept.permissionDenied };
    }
    const { snapshot, readlinks } = this.read(pid, now);
    this.keep(pid, snapshot);
    return { held: snapshot.sockets.has(inode), readlinks, permissionDenied: snapshot.permissionDenied };
  }

  private read(pid: number, takenAt: number): { snapshot: Snapshot; readlinks: number } {
    const snapshot: Snapshot = { takenAt, sockets: new Set(), permissionDenied: false };
    const dir = `${this.procDir}/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      snapshot.permissionDenied = isPermissionError(err);
      return { snapshot, readlinks: 0 };
    }
    for (const fd of fds) {
      try {
        const inode = socketInodeOfLink(readlinkSync(`${dir}/${fd}`));
        if (inode !== null) snapshot.sockets.add(inode);
      } catch (err) {
        // Closed since the listing (ENOENT), or not ours to read.
        if (isPermissionError(err)) snapshot.permissionDenied = true;
      }
    }
    return { snapshot, readlinks: fds.length };
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

function isPermissionError(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'EACCES' || code === 'EPERM';
}
