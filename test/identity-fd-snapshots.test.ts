// Fd table snapshots against this process's own real sockets: what a snapshot may answer
// (a socket it saw; a socket missing after the moment it was known to exist) and what needs a
// fresh read of /proc/<pid>/fd.
import { closeSync, openSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FdSnapshots, likeliestFirst, socketInodeOfLink } from '../src/identity/fd-snapshots.js';

describe('socketInodeOfLink', () => {
  it('reads the inode of a socket link and nothing else', () => {
    expect(socketInodeOfLink('socket:[123456]')).toBe(123456);
    for (const other of ['pipe:[123]', 'socket:[]', 'socket:[12a]', 'socket:[-1]', 'socket:[0]', '/dev/null', 'socket:123', 'anon_inode:[eventpoll]']) {
      expect(socketInodeOfLink(other), other).toBeNull();
    }
  });
});

describe('likeliestFirst', () => {
  it('orders fd numbers not seen before, then former sockets, then the rest', () => {
    const links = new Map([['0', 0], ['3', 77], ['4', 0], ['5', 78]]);
    expect(likeliestFirst(['0', '3', '4', '5', '6', '9'], links)).toEqual(['6', '9', '3', '5', '0', '4']);
    expect(likeliestFirst(['2', '1'], null)).toEqual(['2', '1']);
  });
});

describe('FdSnapshots', () => {
  let server: net.Server;
  let port: number;
  const open: net.Socket[] = [];

  beforeAll(async () => {
    server = net.createServer((s) => open.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    for (const s of open) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  async function connectAndGetInode(): Promise<{ socket: net.Socket; inode: number }> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    open.push(socket);
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    const inode = socketInodeOfLink(readlinkSync(`/proc/self/fd/${fd}`));
    if (inode === null) throw new Error('no socket inode');
    return { socket, inode };
  }

  /** Makes `fd` the lowest free number (fills the holes below it), so the next socket gets it. */
  function makeLowestFree(fd: number, fillers: number[]): void {
    for (let i = 0; i < 4096; i++) {
      const filler = openSync('/dev/null', 'r');
      if (filler === fd) return closeSync(filler);
      fillers.push(filler);
      if (filler > fd) throw new Error(`fd ${fd} is not free`);
    }
  }

  it('answers from a snapshot for sockets it saw, and reads again for a socket made after it', async () => {
    const snapshots = new FdSnapshots();
    const first = await connectAndGetInode();
    const firstAsked = performance.now();
    const fresh = snapshots.holds(process.pid, first.inode, firstAsked);
    expect(fresh.held).toBe(true);
    expect(fresh.readlinks).toBeGreaterThan(0);

    // Seen in the snapshot: no new read.
    expect(snapshots.holds(process.pid, first.inode, performance.now())).toMatchObject({ held: true, readlinks: 0 });

    const second = await connectAndGetInode();
    // Asked as of a moment before the snapshot: the snapshot's miss is an answer...
    expect(snapshots.holds(process.pid, second.inode, firstAsked - 1)).toMatchObject({ held: false, readlinks: 0 });
    // ...but not for a socket known only after the snapshot: the table is read again.
    const reread = snapshots.holds(process.pid, second.inode, performance.now());
    expect(reread.held).toBe(true);
    expect(reread.readlinks).toBeGreaterThan(0);
  });

  it('finds a socket that took a closed socket\'s fd number without reading the whole table', async () => {
    const files = Array.from({ length: 300 }, () => openSync('/dev/null', 'r'));
    try {
      const snapshots = new FdSnapshots();
      const old = await connectAndGetInode();
      expect(snapshots.holds(process.pid, old.inode, performance.now()).readlinks).toBeGreaterThan(300);
      old.socket.destroy();
      await new Promise((resolve) => old.socket.once('close', resolve));
      const fresh = await connectAndGetInode();
      const answer = snapshots.holds(process.pid, fresh.inode, performance.now());
      expect(answer.held).toBe(true);
      expect(answer.readlinks).toBeLessThan(50);
      // The early stop cannot show absences: a socket the snapshot has not seen is read for again.
      const other = await connectAndGetInode();
      expect(snapshots.holds(process.pid, other.inode, performance.now()).held).toBe(true);
      // ...and an absence is only ever concluded from a read to the end.
      const absent = snapshots.holds(process.pid, 2 ** 32 + 1, performance.now());
      expect(absent.held).toBe(false);
      expect(absent.readlinks).toBeGreaterThan(300);
    } finally {
      for (const fd of files) closeSync(fd);
    }
  });

  it('after a release, finds the next socket in the freed fd with one read and no listing', async () => {
    const files = Array.from({ length: 300 }, () => openSync('/dev/null', 'r'));
    try {
      const snapshots = new FdSnapshots();
      const old = await connectAndGetInode();
      expect(snapshots.holds(process.pid, old.inode, performance.now()).held).toBe(true);
      const oldFd = (old.socket as unknown as { _handle: { fd: number } })._handle.fd;
      snapshots.released(old.inode);
      old.socket.destroy();
      await new Promise((resolve) => old.socket.once('close', resolve));
      makeLowestFree(oldFd, files);
      const fresh = await connectAndGetInode();
      // The kernel gives the lowest free number: the one the released socket left.
      expect((fresh.socket as unknown as { _handle: { fd: number } })._handle.fd).toBe(oldFd);
      expect(snapshots.holds(process.pid, fresh.inode, performance.now())).toMatchObject({ held: true, readlinks: 1 });
      // A hint is only a place to look first: a socket elsewhere is still found by the full way.
      const other = await connectAndGetInode();
      const answer = snapshots.holds(process.pid, other.inode, performance.now());
      expect(answer.held).toBe(true);
      expect(answer.readlinks).toBeGreaterThan(1);
      // Releasing a socket never seen, or twice, is harmless.
      snapshots.released(2 ** 32 + 3);
      snapshots.released(old.inode);
    } finally {
      for (const fd of files) closeSync(fd);
    }
  });

  it('does not use a snapshot older than its maximum age', async () => {
    const snapshots = new FdSnapshots('/proc', 0);
    const { socket, inode } = await connectAndGetInode();
    expect(snapshots.holds(process.pid, inode, performance.now()).held).toBe(true);
    socket.destroy();
    await new Promise((resolve) => socket.once('close', resolve));
    const answer = snapshots.holds(process.pid, inode, 0, performance.now() + 1);
    expect(answer.held).toBe(false);
    expect(answer.readlinks).toBeGreaterThan(0);
  });

  it('says no for a process that does not exist', () => {
    expect(new FdSnapshots().holds(2 ** 22 + 7, 1, 0)).toMatchObject({ held: false, permissionDenied: false });
  });
});
