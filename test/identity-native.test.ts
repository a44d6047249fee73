// The native procfs reads of identity (native-procfs.ts) against real processes and sockets:
// the same identities as the JavaScript reads, a client's later connections found through the
// process held open, an exec in the same pid seen at once, and a reused pid never answered from
// what was kept for the process that had it before.
import { existsSync, readlinkSync, statSync } from 'node:fs';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ANCESTRY_TTL_MS } from '../src/identity/ancestry.js';
import { FdSnapshots } from '../src/identity/fd-snapshots.js';
import { fingerprintOf } from '../src/identity/integrity.js';
import { NativeProcfs } from '../src/identity/native-procfs.js';
import { readProcStat } from '../src/identity/process-table.js';
import { IdentityResolver } from '../src/identity/resolver.js';
import type { ProcessIdentity } from '../src/identity/types.js';
import { childPids, Children, exited, firstLine, Listener, pythonBinary, readlinkF, sha256File, tupleOf, waitFor } from './fixtures/identity/harness.js';

const BASH = readlinkF('/usr/bin/bash');
const PYTHON = pythonBinary();
const SELF = readlinkF(`/proc/${process.pid}/exe`);

const native = NativeProcfs.load();
// scripts/setup.sh builds the addon wherever gcc and Node's headers are (.ci/run installs gcc).
const nativeBuilt = existsSync('/usr/bin/gcc') || existsSync('/usr/local/bin/gcc');

/** Starts argv[2:] with the pid argv[1] (clone3 with set_tid, root only), prints it (or "error N"), waits for it. */
const CLONE_WITH_PID = `import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
tid = (ctypes.c_int * 1)(int(sys.argv[1]))
# struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal (SIGCHLD), stack, stack_size, tls, set_tid, set_tid_size, cgroup
args = ctypes.create_string_buffer(struct.pack('11Q', 0, 0, 0, 0, 17, 0, 0, 0, ctypes.addressof(tid), 1, 0), 88)
pid = libc.syscall(435, args, ctypes.c_size_t(88))
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
print(pid if pid > 0 else 'error %d' % ctypes.get_errno(), flush=True)
if pid > 0:
    os.waitpid(pid, 0)`;

const children = new Children();
let listener: Listener;
const resolvers: IdentityResolver[] = [];
function newResolver(options: ConstructorParameters<typeof IdentityResolver>[0] = {}): IdentityResolver {
  const resolver = new IdentityResolver(options);
  resolvers.push(resolver);
  return resolver;
}

beforeAll(async () => {
  listener = await Listener.open('127.0.0.1');
});
afterEach(() => {
  children.killAll();
  for (const r of resolvers.splice(0)) r.close();
});
afterAll(async () => {
  children.killAll();
  await listener?.close();
});

/** What must not differ between the native and the JavaScript reads. */
function comparable(identity: ProcessIdentity): ProcessIdentity {
  const { unresolved_detail: _detail, ...rest } = identity;
  return rest;
}

describe('the native procfs reads', () => {
  it('are built wherever gcc is, and fingerprint a file as Node prints its bigint stats', () => {
    expect(native !== null).toBe(nativeBuilt);
    if (!native) return;
    const [self] = native.chain(process.pid, 1, undefined);
    expect(self).toMatchObject({ pid: process.pid, ppid: process.ppid, startTime: readProcStat(process.pid).startTime, exeError: null });
    expect(self!.exe?.path).toBe(SELF);
    expect(self!.fingerprint).toBe(fingerprintOf(statSync(`/proc/${process.pid}/exe`, { bigint: true })));
  });

  it('an fd table read natively answers as one read link by link: held sockets, absent ones, gone processes', async () => {
    if (!native) return;
    const sockets = await Promise.all(
      Array.from({ length: 3 }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect(listener.port, '127.0.0.1', () => resolve(s));
      })),
    );
    // Their accepted ends, taken off the listener's queue (the later tests take theirs from it).
    const accepted = await Promise.all(sockets.map(() => listener.next()));
    try {
      const inodes = sockets.map((s) => Number(/\d+/.exec(readlinkSync(`/proc/self/fd/${(s as unknown as { _handle: { fd: number } })._handle.fd}`))![0]));
      const viaNative = new FdSnapshots('/proc', 2_000, 512, native);
      const viaJs = new FdSnapshots();
      for (const inode of [...inodes, 1]) {
        const now = performance.now();
        const [a, b] = [viaNative.holds(process.pid, inode, now), viaJs.holds(process.pid, inode, now)];
        expect({ held: a.held, permissionDenied: a.permissionDenied }).toEqual({ held: b.held, permissionDenied: b.permissionDenied });
        expect(a.held).toBe(inode !== 1);
      }
      const gone = children.spawn('/usr/bin/true', []);
      await exited(gone);
      expect(viaNative.holds(gone.pid!, inodes[0]!, performance.now())).toMatchObject({ held: false, permissionDenied: false });
    } finally {
      for (const s of [...sockets, ...accepted]) s.destroy();
    }
  });

  it("a long-lived client's connections: found through the process held open, the same identity as the JavaScript reads give", async () => {
    if (!native) return;
    const fast = newResolver({ cmdline: false });
    const slow = newResolver({ cmdline: false, nativeProcfs: false });
    // python3 under bash: each line on stdin opens a new connection and closes the one before.
    const client = children.spawn(BASH, [
      '-c',
      `'${PYTHON}' -c "import socket, sys
prev = None
for line in sys.stdin:
    s = socket.create_connection(('127.0.0.1', ${listener.port}))
    if prev: prev.close()
    prev = s"; true`,
    ]);
    const python = await waitFor(() => childPids(client.pid!)[0], 'the python client');
    let previous: net.Socket | undefined;
    for (let i = 0; i < 6; i++) {
      client.stdin!.write('\n');
      const socket = await listener.next();
      const [viaNative, viaJs] = [await fast.resolve(tupleOf(socket)), await slow.resolve(tupleOf(socket))];
      expect(viaNative).toMatchObject({ path: PYTHON, pid: python, sha256: await sha256File(PYTHON) });
      expect(viaNative.ancestors.slice(0, 2)).toMatchObject([
        { pid: client.pid, path: BASH, sha256: await sha256File(BASH) },
        { pid: process.pid, path: SELF },
      ]);
      expect(comparable(viaNative)).toEqual(comparable(viaJs));
      if (previous) {
        fast.released(tupleOf(previous));
        slow.released(tupleOf(previous));
      }
      previous = socket;
    }
    // The first lookup searched; the later ones found the client through the pinned process.
    expect(fast.pinnedLookups).toBeGreaterThanOrEqual(4);
    expect(slow.pinnedLookups).toBe(0);
  });

  for (const nativeProcfs of [true, false]) {
    it(`an exec in the same pid is seen at once (start time unchanged), ${nativeProcfs ? 'native' : 'JavaScript'} reads`, async () => {
      if (nativeProcfs && !native) return;
      const resolver = newResolver({ cmdline: false, nativeProcfs });
      // bash connects twice (each time waiting for a line, then closing the socket; from its
      // second connection on the resolver holds it open), then execs python3, which connects.
      const connectAndWait = `exec 3<>/dev/tcp/127.0.0.1/${listener.port}; read -r line <&3; exec 3<&-`;
      const script = `${connectAndWait}; ${connectAndWait}; exec '${PYTHON}' -c "import socket; s = socket.create_connection(('127.0.0.1', ${listener.port})); s.recv(1)"`;
      const child = children.spawn(BASH, ['-c', script]);
      let previous: net.Socket | undefined;
      for (let i = 0; i < 2; i++) {
        const socket = await listener.next();
        if (previous) resolver.released(tupleOf(previous));
        expect(await resolver.resolve(tupleOf(socket))).toMatchObject({ path: BASH, pid: child.pid, sha256: await sha256File(BASH) });
        socket.write('go\n');
        previous = socket;
      }
      const startBefore = readProcStat(child.pid!).startTime;
      const second = await listener.next();
      resolver.released(tupleOf(previous!));
      const after = await resolver.resolve(tupleOf(second));
      // The same process (pid and start time), another program.
      expect(readProcStat(child.pid!).startTime).toBe(startBefore);
      expect(after).toMatchObject({ path: PYTHON, pid: child.pid, sha256: await sha256File(PYTHON) });
      expect(after.ancestors[0]).toMatchObject({ pid: process.pid, path: SELF });
      // Natively, the lookup after the exec found the process through its pinned files.
      if (nativeProcfs) expect(resolver.pinnedLookups).toBe(1);
      second.end('x');
    });
  }

  for (const nativeProcfs of [true, false]) {
    it(`a parent pid reused by another program is not answered from the kept ancestry, ${nativeProcfs ? 'native' : 'JavaScript'} reads`, async (context) => {
      if (nativeProcfs && !native) return;
      const resolver = newResolver({ cmdline: false, nativeProcfs });
      const client = `exec 3<>/dev/tcp/127.0.0.1/${listener.port}; read -r line <&3`;
      // First: python3 (pid P) runs a bash client; its ancestry is kept.
      const first = children.spawn(PYTHON, ['-c', `import subprocess, sys; subprocess.run(['${BASH}', '-c', sys.argv[1]])`, client]);
      const reused = first.pid!;
      const socket = await listener.next();
      expect((await resolver.resolve(tupleOf(socket))).ancestors[0]).toMatchObject({ pid: reused, path: PYTHON });
      // Asked again once what was kept has expired (ANCESTRY_TTL_MS): kept anew, just before the
      // reuse, so that the lookup after it comes well within the time a kept ancestry is used
      // (a cache keyed by the parent's pid alone answers it with python3: checked).
      await new Promise((resolve) => setTimeout(resolve, ANCESTRY_TTL_MS + 20));
      expect((await resolver.resolve(tupleOf(socket))).ancestors[0]).toMatchObject({ pid: reused, path: PYTHON });
      // Then P ends, and bash is started with pid P (clone3 with set_tid: the pid asked for, and
      // nothing else about pid allocation changes for other processes), running a bash client.
      const kept = childPids(reused);
      first.kill('SIGKILL');
      for (const pid of kept) process.kill(pid, 'SIGKILL');
      await exited(first);
      socket.destroy();
      const starter = children.spawn(PYTHON, ['-c', CLONE_WITH_PID, String(reused), BASH, '-c', `'${BASH}' -c '${client}'; true`], { stdout: true });
      const started = await firstLine(starter);
      if (started !== String(reused)) return context.skip(`clone3 could not hand out pid ${reused} again here (${started})`);
      const reuseSocket = await listener.next();
      const after = await resolver.resolve(tupleOf(reuseSocket));
      expect(after.path).toBe(BASH);
      expect(after.ancestors.slice(0, 3)).toMatchObject([
        { pid: reused, path: BASH, sha256: await sha256File(BASH) },
        { pid: starter.pid, path: PYTHON },
        { pid: process.pid, path: SELF },
      ]);
      reuseSocket.destroy();
    });
  }
});
