// Identity resolution against real processes and real sockets in this network namespace:
// a listener accepts connections from curl, python3, node and bash, and resolves each.
import { execFile } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, closeSync, copyFileSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readAncestorPids, readExecutable } from '../src/identity/process-info.js';
import { ProcessTable } from '../src/identity/process-table.js';
import { IdentityResolver } from '../src/identity/resolver.js';
import { SockDiag } from '../src/identity/sock-diag.js';
import { findClientSocket } from '../src/identity/socket-lookup.js';
import { UnresolvedError } from '../src/identity/unresolved.js';
import {
  childPids,
  Children,
  exited,
  firstLine,
  Listener,
  pythonBinary,
  readlinkF,
  sha256File,
  tupleOf,
  waitFor,
} from './fixtures/identity/harness.js';

const CURL = readlinkF('/usr/bin/curl');
const BASH = readlinkF('/usr/bin/bash');
const PYTHON = pythonBinary();
const NODE = readlinkF(process.execPath);
const SELF = readlinkF(`/proc/${process.pid}/exe`);

const dir = mkdtempSync(join(tmpdir(), 'portcullis-identity-'));
const children = new Children();
let v4: Listener;
let v6: Listener;
let dual: Listener;

beforeAll(async () => {
  [v4, v6, dual] = await Promise.all([Listener.open('127.0.0.1'), Listener.open('::1'), Listener.open('::')]);
});
const resolvers: IdentityResolver[] = [];
/** A resolver whose sock_diag helper is stopped after the test. */
function newResolver(options: ConstructorParameters<typeof IdentityResolver>[0] = {}): IdentityResolver {
  const resolver = new IdentityResolver(options);
  resolvers.push(resolver);
  return resolver;
}
afterEach(() => {
  children.killAll();
  for (const r of resolvers.splice(0)) r.close();
});
afterAll(async () => {
  children.killAll();
  await Promise.all([v4?.close(), v6?.close(), dual?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** bash holding a connection open on fd 3 until the server writes a line. */
function bashHolding(bash: string, host: string, port: number, extra = ''): string[] {
  return [bash, '-c', `exec 3<>/dev/tcp/${host}/${port}; ${extra} read -r -t 60 line <&3; true`];
}

describe('resolving real clients', () => {
  // Warmed: the process table was listed before curl started; the lookup must bring it up to
  // date, not trust the listing.
  for (const warmed of [false, true]) {
    it(`curl over IPv4${warmed ? ', to a resolver warmed before curl started' : ''}: the kernel path, its pid, the test process as parent, hash and command line`, async () => {
      const resolver = newResolver();
      if (warmed) await resolver.warm();
      const child = children.spawn('/usr/bin/curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${v4.port}/from-curl`]);
      const socket = await v4.next();
      const identity = await resolver.resolve(tupleOf(socket));
      expect(identity.unresolved_reason).toBeUndefined();
      expect(identity.path).toBe(CURL);
      expect(identity.pid).toBe(child.pid);
      expect(identity.ancestors[0]).toMatchObject({ pid: process.pid, path: SELF });
      expect(identity.sha256).toBe(await sha256File(CURL));
      expect(identity.cmdline).toContain(`http://127.0.0.1:${v4.port}/from-curl`);
      socket.end('HTTP/1.0 204 No Content\r\n\r\n');
    });
  }

  it('a resolver made without command lines (as the proxy makes it) resolves the same and leaves cmdline out', async () => {
    const resolver = newResolver({ cmdline: false });
    const child = children.spawn('/usr/bin/curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${v4.port}/no-cmdline`]);
    const socket = await v4.next();
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity.path).toBe(CURL);
    expect(identity.pid).toBe(child.pid);
    expect(identity.sha256).toBe(await sha256File(CURL));
    expect(identity).not.toHaveProperty('cmdline');
    socket.end('HTTP/1.0 204 No Content\r\n\r\n');
  });

  it('curl started by python3 started by bash: ancestors nearest first, each with its hash', async () => {
    const resolver = newResolver();
    const script = `import subprocess, sys; subprocess.run(['/usr/bin/curl', '-s', '-o', '/dev/null', sys.argv[1]])`;
    const bash = children.spawn(BASH, ['-c', `'${PYTHON}' -c "${script}" http://127.0.0.1:${v4.port}/chain; true`]);
    const socket = await v4.next();
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity.path).toBe(CURL);
    expect(identity.ancestors.map((a) => a.path).slice(0, 3)).toEqual([PYTHON, BASH, SELF]);
    expect(identity.ancestors[1]!.pid).toBe(bash.pid);
    expect(identity.ancestors[2]!.pid).toBe(process.pid);
    expect(identity.ancestors[0]!.sha256).toBe(await sha256File(PYTHON));
    expect(identity.ancestors[1]!.sha256).toBe(await sha256File(BASH));
    expect(identity.ancestors.some((a) => a.pid === 1)).toBe(false);
    socket.end('HTTP/1.0 204 No Content\r\n\r\n');
  });

  it('python3 over IPv6', async () => {
    const resolver = newResolver();
    const child = children.spawn(PYTHON, ['-c', `import socket; s = socket.create_connection(('::1', ${v6.port})); s.recv(1)`]);
    const socket = await v6.next();
    const identity = await resolver.resolve(tupleOf(socket));
    expect(socket.remoteAddress).toBe('::1');
    expect(identity).toMatchObject({ path: PYTHON, pid: child.pid });
    socket.end('x');
  });

  it('node over IPv4 to a dual-stack listener (the proxy sees ::ffff:127.0.0.1)', async () => {
    const resolver = newResolver();
    const child = children.spawn(process.execPath, ['-e', `require('net').connect(${dual.port}, '127.0.0.1').on('data', () => process.exit(0))`]);
    const socket = await dual.next();
    expect(socket.remoteAddress).toBe('::ffff:127.0.0.1');
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity).toMatchObject({ path: NODE, pid: child.pid });
    socket.end('x');
  });

  it('python3 with an IPv6 socket to an IPv4-mapped address (its row is in tcp6)', async () => {
    const resolver = newResolver();
    const child = children.spawn(PYTHON, [
      '-c',
      `import socket; s = socket.socket(socket.AF_INET6); s.connect(('::ffff:127.0.0.1', ${dual.port})); s.recv(1)`,
    ]);
    const socket = await dual.next();
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity).toMatchObject({ path: PYTHON, pid: child.pid });
    socket.end('x');
  });

  it('bash with /dev/tcp', async () => {
    const resolver = newResolver();
    const [cmd, ...args] = bashHolding('/usr/bin/bash', '127.0.0.1', v4.port);
    const child = children.spawn(cmd!, args);
    const socket = await v4.next();
    expect(await resolver.resolve(tupleOf(socket))).toMatchObject({ path: BASH, pid: child.pid });
    socket.end('done\n');
  });

  it('a socket shared with a forked child running another program is ambiguous, never a guess', async () => {
    const resolver = newResolver();
    const [cmd, ...args] = bashHolding('/usr/bin/bash', '127.0.0.1', v4.port, 'sleep 60;');
    const bash = children.spawn(cmd!, args);
    const socket = await v4.next();
    const sleeper = await waitFor(() => childPids(bash.pid!)[0], 'the sleep child');
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity).toMatchObject({ path: '<unresolved>', pid: null, ancestors: [], unresolved_reason: 'ambiguous_owner' });
    expect(identity.owner_pids?.sort()).toEqual([bash.pid, sleeper].sort());
    process.kill(sleeper, 'SIGKILL');
  });

  it("a busy client's siblings running its own executable cost no read of their process per lookup", async () => {
    const resolver = newResolver({ cmdline: false });
    // A parent with four node children: three idle siblings and the client, which connects once
    // per line the parent passes on (as a test runner's or an agent's workers are siblings).
    const client = `const net = require('net'); const kept = []; process.stdin.on('data', (d) => { for (let i = 0; i < d.length; i++) kept.push(net.connect(${v4.port}, '127.0.0.1')); });`;
    const family = `
const { spawn } = require('node:child_process');
for (let i = 0; i < 3; i++) spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
const client = spawn(process.execPath, ['-e', ${JSON.stringify(client)}], { stdio: ['pipe', 'ignore', 'inherit'] });
console.log(client.pid);
process.stdin.on('data', (d) => client.stdin.write(d));
process.stdin.on('end', () => process.exit(0));
`;
    const parent = children.spawn(NODE, ['-e', family], { stdout: true });
    const clientPid = Number(await firstLine(parent));
    const lookups = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) {
        parent.stdin!.write('x');
        const socket = await v4.next();
        expect(await resolver.resolve(tupleOf(socket))).toMatchObject({ path: NODE, pid: clientPid });
        socket.destroy();
      }
    };
    await lookups(5);
    const before = resolver.processReadsByPid;
    // The first lookups read the client and its parents by pid (the native reads are in use).
    expect(before).toBeGreaterThan(0);
    await lookups(20);
    // Reading each sibling's executable at every lookup would be 60 reads: fewer than one per
    // lookup is left (the ancestors are walked again at most every ANCESTRY_TTL_MS, however slow
    // a loaded machine makes the 20 lookups; the owner is read through its pinned files).
    expect(resolver.processReadsByPid - before).toBeLessThan(20);
    for (const pid of childPids(parent.pid!)) process.kill(pid, 'SIGKILL');
  });

  it('a socket shared by fork without exec resolves to the fork parent (same executable)', async () => {
    const resolver = newResolver();
    const script = [
      'import socket, os, sys, time',
      `s = socket.create_connection(('127.0.0.1', ${v4.port}))`,
      'pid = os.fork()',
      'if pid:',
      '    print(pid, flush=True); s.recv(1)',
      'else:',
      '    time.sleep(60)',
    ].join('\n');
    const parent = children.spawn(PYTHON, ['-c', script], { stdout: true });
    const forked = Number(await firstLine(parent));
    const socket = await v4.next();
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity).toMatchObject({ path: PYTHON, pid: parent.pid });
    process.kill(forked, 'SIGKILL');
    socket.end('x');
  });

  it('a parent that passed its socket to a child started after the parent was last read is still found (the look must postdate the fork)', async () => {
    const resolver = newResolver();
    const script = [
      'import socket, subprocess, sys',
      // A first child with a connection of its own: resolving it reads this process as its parent.
      `first = subprocess.Popen([sys.executable, '-c', 'import socket, time; s = socket.create_connection(("127.0.0.1", ${v4.port})); time.sleep(60)'])`,
      'print(first.pid, flush=True)',
      'sys.stdin.readline()',
      // Only now: a new socket, handed to a child that runs another program.
      `s = socket.create_connection(('127.0.0.1', ${v4.port}))`,
      "second = subprocess.Popen(['sleep', '60'], pass_fds=[s.fileno()])",
      'print(second.pid, flush=True)',
      'sys.stdin.readline()',
    ].join('\n');
    const parent = children.spawn(PYTHON, ['-c', script], { stdout: true });
    // Its children are grandchildren of this process: killed here whatever happens.
    const grandchildren = (): number[] => childPids(parent.pid!);
    try {
      const lines: string[] = [];
      let buffered = '';
      parent.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const parts = buffered.split('\n');
        buffered = parts.pop()!;
        lines.push(...parts);
      });
      const firstChild = Number(await waitFor(() => lines[0], 'the first child'));
      const firstSocket = await v4.next();
      expect(await resolver.resolve(tupleOf(firstSocket))).toMatchObject({ path: PYTHON, pid: firstChild });

      parent.stdin!.write('go\n');
      const sleeper = Number(await waitFor(() => lines[1], 'the sleep child'));
      const shared = await v4.next();
      const identity = await resolver.resolve(tupleOf(shared));
      expect(identity).toMatchObject({ path: '<unresolved>', unresolved_reason: 'ambiguous_owner' });
      expect(identity.owner_pids?.sort()).toEqual([parent.pid, sleeper].sort());
    } finally {
      for (const pid of grandchildren()) process.kill(pid, 'SIGKILL');
      parent.stdin!.end('\n');
    }
  });

  it('the exhaustive search also sees a socket passed to an unrelated process', async () => {
    // A connects and passes its socket over a unix socket to B, which is not in A's family
    // (B's parent is a separate shell); both keep it.
    const unixPath = join(dir, `pass-${process.pid}.sock`);
    const receiver = children.spawn(
      '/usr/bin/bash',
      ['-c', `'${PYTHON}' -c "import socket, time; u = socket.socket(socket.AF_UNIX); u.bind('${unixPath}'); u.listen(1); c, _ = u.accept(); msg, fds, _, _ = socket.recv_fds(c, 16, 1); print(fds[0], flush=True); time.sleep(60)"; true`],
      { stdout: true },
    );
    // The python under bash is a grandchild: killed here, since killing bash leaves it running.
    const grandchildren = (): number[] => childPids(receiver.pid!);
    try {
      await waitFor(() => existsSync(unixPath), 'the unix socket');
      const sender = children.spawn(PYTHON, [
        '-c',
        `import socket; s = socket.create_connection(('127.0.0.1', ${v4.port})); u = socket.socket(socket.AF_UNIX); u.connect('${unixPath}'); socket.send_fds(u, [b'x'], [s.fileno()]); s.recv(1)`,
      ]);
      await firstLine(receiver);
      const socket = await v4.next();
      const exhaustive = new IdentityResolver({ exhaustiveOwnerSearch: true });
      const identity = await exhaustive.resolve(tupleOf(socket));
      exhaustive.close();
      expect(identity).toMatchObject({ path: '<unresolved>', unresolved_reason: 'ambiguous_owner' });
      expect(identity.owner_pids).toContain(sender.pid);
      expect(identity.owner_pids).toHaveLength(2);
      socket.end('x');
    } finally {
      for (const pid of grandchildren()) process.kill(pid, 'SIGKILL');
    }
  });

  it('a client that exited before resolution gets the sentinel', async () => {
    const resolver = newResolver();
    const child = children.spawn(process.execPath, ['-e', `require('net').connect(${v4.port}, '127.0.0.1', function () { this.end(); process.exit(0); })`]);
    const socket = await v4.next();
    const tuple = tupleOf(socket);
    await Promise.all([exited(child), new Promise((r) => socket.once('end', r))]);
    const identity = await resolver.resolve(tuple);
    expect(identity).toEqual({
      path: '<unresolved>',
      pid: null,
      ancestors: [],
      cmdline: [],
      sha256: null,
      unresolved_reason: 'no_socket_row',
      unresolved_detail: expect.any(String),
    });
  });

  it('a tuple with no socket row, and an anchor that does not exist, get the sentinel', async () => {
    const resolver = newResolver();
    const ghost = await resolver.resolve({ clientAddress: '127.0.0.1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: v4.port });
    expect(ghost).toMatchObject({ path: '<unresolved>', unresolved_reason: 'no_socket_row' });
    // What a destroyed socket reports: no address at all.
    const blank = await resolver.resolve({ clientAddress: undefined as unknown as string, clientPort: NaN, proxyAddress: '127.0.0.1', proxyPort: 1 });
    expect(blank).toMatchObject({ path: '<unresolved>', unresolved_reason: 'no_socket_row' });
    const gone = children.spawn('/usr/bin/true', []);
    await exited(gone);
    const noAnchor = await resolver.resolve({ clientAddress: '127.0.0.1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: 2 }, { anchorPid: gone.pid! });
    expect(noAnchor).toMatchObject({ path: '<unresolved>', unresolved_reason: 'process_gone' });
  });

  it('procfs failures map to reason codes: an exited process is process_gone', async () => {
    const gone = children.spawn('/usr/bin/true', []);
    await exited(gone);
    await new Promise((r) => setTimeout(r, 50)); // let the zombie be reaped
    expect(() => readExecutable(gone.pid!)).toThrow(expect.objectContaining({ reason: 'process_gone' }));
    expect(() => readAncestorPids(gone.pid!, undefined)).toThrow(UnresolvedError);
  });

  it('procfs failures map to reason codes: a kernel thread (no executable) is unreadable_exe', (ctx) => {
    const kernelThread = firstKernelThread();
    // Only the host's PID namespace shows kernel threads; a container's does not.
    if (kernelThread === undefined) ctx.skip('no kernel thread is visible in this PID namespace');
    expect(() => readExecutable(kernelThread!)).toThrow(expect.objectContaining({ reason: 'unreadable_exe' }));
  });
});

/** PF_KTHREAD in /proc/<pid>/stat's flags (field 9). */
const PF_KTHREAD = 0x00200000;

/** The lowest pid of a kernel thread, told by its flags rather than its name; none in a container. */
function firstKernelThread(): number | undefined {
  const pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number).sort((a, b) => a - b);
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name, which may itself hold spaces and parentheses: state is field 3.
    const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
    if ((flags & PF_KTHREAD) !== 0) return pid;
  }
  return undefined;
}

describe('process table', () => {
  it('lists the most recently started first and finds descendants through parent links', async () => {
    const table = new ProcessTable();
    const bash = children.spawn('/usr/bin/bash', ['-c', 'sleep 60; true']);
    const sleeper = await waitFor(() => childPids(bash.pid!)[0], 'the sleep child');
    const pids = await table.refresh();
    // (Start times have a resolution of one clock tick: bash and its child may share one.)
    expect(pids.indexOf(sleeper)).toBeGreaterThanOrEqual(0);
    expect(pids.indexOf(sleeper)).toBeLessThan(pids.indexOf(process.pid));
    expect(pids.indexOf(bash.pid!)).toBeLessThan(pids.indexOf(process.pid));
    expect(table.parentOf(sleeper)).toBe(bash.pid);
    expect(table.descendantsOf(process.pid)).toEqual(expect.arrayContaining([process.pid, bash.pid, sleeper]));
    expect(table.childrenOf(bash.pid!)).toEqual([sleeper]);
    // A look younger than the allowed age is reused as it is; a new process started since
    // joins at the next look (read alone when few pids were handed out since); exited ones
    // are dropped by the next full listing, due a second after the last.
    bash.kill('SIGKILL');
    process.kill(sleeper, 'SIGKILL');
    await exited(bash);
    expect(await table.refresh(60_000)).toContain(bash.pid);
    const newcomer = children.spawn('/usr/bin/sleep', ['60']);
    const fresh = await table.refresh();
    expect(fresh.indexOf(newcomer.pid!)).toBeGreaterThanOrEqual(0);
    expect(fresh.indexOf(newcomer.pid!)).toBeLessThan(fresh.indexOf(process.pid));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await exited(children.spawn('/usr/bin/true', []));
    await table.refresh();
    // The listing that forgets them runs after that look, out of its way.
    await waitFor(() => !table.currentPids.includes(bash.pid!), 'the exited to be forgotten');
  });

  it('takes in processes started since the last look, and never their threads', async () => {
    const table = new ProcessTable();
    await table.refresh();
    const python = children.spawn(PYTHON, ['-c', 'import threading, time\nt = threading.Thread(target=time.sleep, args=(60,)); t.start()\nprint("ready", flush=True); time.sleep(60)'], { stdout: true });
    await firstLine(python);
    const threads = readdirSync(`/proc/${python.pid}/task`).map(Number).filter((tid) => tid !== python.pid);
    expect(threads.length).toBeGreaterThan(0);
    const pids = await table.refresh();
    expect(pids).toContain(python.pid);
    for (const tid of threads) expect(pids).not.toContain(tid);
    expect(table.parentOf(python.pid!)).toBe(process.pid);
  });
});

/** What scripts/build-native.sh needs: gcc and the N-API headers of the Node that runs us (.ci/run installs gcc). */
function nativeBuildMissing(): string | undefined {
  const headers = join(dirname(dirname(realpathSync(process.execPath))), 'include', 'node', 'node_api.h');
  if (!existsSync(headers)) return `no N-API headers for this Node (${headers})`;
  if (!['/usr/bin/gcc', '/usr/local/bin/gcc'].some((gcc) => existsSync(gcc))) return 'no gcc to build the sock_diag addon';
  return undefined;
}

describe('socket sources', () => {
  // Each lookup path on its own: the addon in process (where it can be built: setup builds it
  // there, so a build that silently stopped working fails here instead of leaving every lookup
  // to the slower helper) and the Python helper; both must find what /proc/net finds.
  for (const source of ['native', 'helper'] as const) {
    it(`sock_diag ${source === 'native' ? 'in process (the native addon)' : 'through the Python helper'} and the /proc/net tables find the same socket for IPv4, IPv6 and IPv4-mapped clients`, async (ctx) => {
      const missing = source === 'native' ? nativeBuildMissing() : undefined;
      if (missing !== undefined) ctx.skip(`${missing}: the native lookup cannot be built here`);
      const diag = source === 'native' ? new SockDiag() : new SockDiag({ native: false });
      expect(diag.via).toBe(source);
      const viaDiag = new IdentityResolver();
      const viaProcfs = new IdentityResolver({ socketSource: 'procfs' });
      // Some hundreds of other connections, so the tables span many pages (one page per read).
      const filler = await Listener.open('127.0.0.1');
      const fillers = await Promise.all(
        Array.from({ length: 300 }, () => new Promise<net.Socket>((resolve) => {
          const c = net.connect(filler.port, '127.0.0.1', () => resolve(c));
          c.on('error', () => {});
        })),
      );
      expect(readFileSync('/proc/self/net/tcp', 'latin1').length).toBeGreaterThan(20 * 4096);
      try {
        const cases: Array<[Listener, string]> = [
          [v4, `socket.create_connection(('127.0.0.1', ${v4.port}))`],
          [v6, `socket.create_connection(('::1', ${v6.port}))`],
          [dual, `socket.socket(socket.AF_INET6); s.connect(('::ffff:127.0.0.1', ${dual.port}))`],
        ];
        for (const [listener, connect] of cases) {
          const child = children.spawn(PYTHON, ['-c', `import socket; s = ${connect}; s.recv(1)`]);
          const socket = await listener.next();
          const { row } = await findClientSocket(tupleOf(socket), { procRoot: '/proc/self', redirected: false });
          expect(await diag.lookup(tupleOf(socket))).toEqual({ inode: row.inode, state: 1 });
          const [a, b] = await Promise.all([viaDiag.resolve(tupleOf(socket)), viaProcfs.resolve(tupleOf(socket))]);
          expect(a).toMatchObject({ path: PYTHON, pid: child.pid });
          expect(b).toEqual(a);
          socket.end('x');
        }
        expect(await diag.lookup({ clientAddress: '127.0.0.1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: v4.port })).toBe('missing');
        // Still the same path after every lookup: no silent fallback.
        expect(diag.via).toBe(source);
      } finally {
        for (const c of fillers) c.destroy();
        await filler.close();
        diag.close();
        viaDiag.close();
      }
    });
  }

  it('without a usable helper, lookups report "unavailable" and resolution still works from procfs', async () => {
    const broken = new SockDiag({ native: false }, '/nonexistent/python3');
    const child = children.spawn(PYTHON, ['-c', `import socket; s = socket.create_connection(('127.0.0.1', ${v4.port})); s.recv(1)`]);
    const socket = await v4.next();
    expect(await broken.lookup(tupleOf(socket))).toBe('unavailable');
    broken.close();
    const resolver = new IdentityResolver({ socketSource: 'procfs' });
    expect(await resolver.resolve(tupleOf(socket))).toMatchObject({ path: PYTHON, pid: child.pid });
    socket.end('x');
  });
});

describe('binary integrity', () => {
  it('hashes a file once per fingerprint, and flags a binary replaced at the same path', async () => {
    const resolver = newResolver();
    const binary = join(dir, 'client-tool');
    copyFileSync(BASH, binary);
    chmodSync(binary, 0o755);

    const [cmd1, ...args1] = bashHolding(binary, '127.0.0.1', v4.port);
    children.spawn(cmd1!, args1);
    const first = await v4.next();
    const one = await resolver.resolve(tupleOf(first));
    expect(one).toMatchObject({ path: binary, sha256: await sha256File(BASH) });
    expect(one.integrity_violation).toBeUndefined();
    const hashedAfterFirst = resolver.filesHashed;
    expect(await resolver.resolve(tupleOf(first))).toMatchObject({ path: binary });
    expect(resolver.filesHashed).toBe(hashedAfterFirst); // unchanged files are not read again
    first.end('done\n');

    // Replace the file (new inode, different bytes) the way an update or an attacker would.
    const replacement = join(dir, 'client-tool.new');
    copyFileSync(BASH, replacement);
    appendFileSync(replacement, Buffer.from('tampered'));
    chmodSync(replacement, 0o755);
    renameSync(replacement, binary);

    const [cmd2, ...args2] = bashHolding(binary, '127.0.0.1', v4.port);
    children.spawn(cmd2!, args2);
    const second = await v4.next();
    const two = await resolver.resolve(tupleOf(second));
    expect(two.path).toBe(binary);
    expect(two.sha256).toBe(await sha256File(binary));
    expect(two.sha256).not.toBe(one.sha256);
    expect(two.integrity_violation).toContain(binary);
    second.end('done\n');
  });

  it('a binary deleted after it started keeps its path, is flagged, and is hashed through /proc/<pid>/exe', async () => {
    const resolver = newResolver();
    const doomed = join(dir, 'doomed-shell');
    copyFileSync(BASH, doomed);
    chmodSync(doomed, 0o755);
    const [cmd, ...args] = bashHolding(doomed, '127.0.0.1', v4.port);
    children.spawn(cmd!, args);
    const socket = await v4.next();
    rmSync(doomed);
    const identity = await resolver.resolve(tupleOf(socket));
    expect(identity).toMatchObject({ path: doomed, exe_deleted: true, sha256: await sha256File(BASH) });
    socket.end('done\n');
  });

  it('a copy of a known binary at another path has its own identity and no violation', async () => {
    const resolver = newResolver();
    const [c1, ...a1] = bashHolding('/usr/bin/bash', '127.0.0.1', v4.port);
    children.spawn(c1!, a1);
    const original = await v4.next();
    expect(await resolver.resolve(tupleOf(original))).toMatchObject({ path: BASH });

    const copy = join(dir, 'other', 'my-shell');
    mkdirSync(join(dir, 'other'), { recursive: true });
    copyFileSync(BASH, copy);
    chmodSync(copy, 0o755);
    const [c2, ...a2] = bashHolding(copy, '127.0.0.1', v4.port);
    children.spawn(c2!, a2);
    const copied = await v4.next();
    const identity = await resolver.resolve(tupleOf(copied));
    expect(identity).toMatchObject({ path: copy, sha256: await sha256File(BASH) });
    expect(identity.integrity_violation).toBeUndefined();
    original.end('done\n');
    copied.end('done\n');
  });

  it('hashing a 100 MB binary does not hold up other resolutions', async () => {
    const resolver = newResolver();
    const big = join(dir, 'big-shell');
    copyFileSync(BASH, big);
    const fd = openSync(big, 'r+');
    ftruncateSync(fd, statSync(BASH).size + 100 * 1024 * 1024); // ELF loaders ignore trailing bytes
    closeSync(fd);
    chmodSync(big, 0o755);

    // Warm the cache for /usr/bin/bash so the small resolution needs no hashing.
    const [w, ...wa] = bashHolding('/usr/bin/bash', '127.0.0.1', v4.port);
    children.spawn(w!, wa);
    const warm = await v4.next();
    await resolver.resolve(tupleOf(warm));

    const [b, ...ba] = bashHolding(big, '127.0.0.1', v4.port);
    children.spawn(b!, ba);
    const bigSocket = await v4.next();
    let bigFinished = false;
    const bigDone = resolver.resolve(tupleOf(bigSocket)).finally(() => {
      bigFinished = true;
    });
    // Only once this process is demonstrably inside the big file (an open descriptor on it)
    // does the other resolution start: it must finish while the hash is still reading.
    const hashing = await eachTurnUntil(() => descriptorOn(big), 'the hash of the big binary to start');
    expect(bigFinished).toBe(false);
    const smallId = await resolver.resolve(tupleOf(warm));
    const stillReading = positionOf(hashing);
    expect(smallId.path).toBe(BASH);
    expect(bigFinished).toBe(false);
    expect(stillReading).not.toBeNull();
    expect(stillReading!).toBeLessThan(statSync(big).size);
    const bigId = await bigDone;
    expect(bigId.path).toBe(big);
    expect(bigId.sha256).toBe(await sha256File(big));
    warm.end('done\n');
    bigSocket.end('done\n');
  });
});

/** Checks at every turn of the event loop (a poll with a timer could miss a short read), for up to 20 s. */
async function eachTurnUntil<T>(check: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const value = check();
    if (value !== undefined) return value;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A descriptor of this process open on `path`, if any. */
function descriptorOn(path: string): number | undefined {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) return Number(fd);
    } catch {
      // closed meanwhile
    }
  }
  return undefined;
}

/** How far descriptor `fd` has read; null once it is closed. */
function positionOf(fd: number): number | null {
  try {
    return Number(/^pos:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1]);
  } catch {
    return null;
  }
}

describe('portcullis whois', () => {
  const run = promisify(execFile);

  it('prints the identity of a client connected to a listening endpoint, and of a client end', async () => {
    const child = children.spawn(PYTHON, ['-c', `import socket; s = socket.create_connection(('127.0.0.1', ${v4.port})); s.recv(1)`]);
    const socket = await v4.next();
    const serverSide = await run('node', ['dist/cli/main.js', 'whois', `127.0.0.1:${v4.port}`], { encoding: 'utf8' });
    const all = JSON.parse(serverSide.stdout) as Array<{ client: string; server: string; identity: { path: string; pid: number } }>;
    const mine = all.find((c) => c.client === `127.0.0.1:${socket.remotePort}`);
    expect(mine).toMatchObject({ server: `127.0.0.1:${v4.port}`, identity: { path: PYTHON, pid: child.pid } });

    const clientSide = await run('node', ['dist/cli/main.js', 'whois', `127.0.0.1:${socket.remotePort}`], { encoding: 'utf8' });
    expect(JSON.parse(clientSide.stdout)).toEqual([expect.objectContaining({ identity: expect.objectContaining({ path: PYTHON, pid: child.pid }) })]);
    socket.end('x');
  });

  it('exits 1 when nothing is connected there, 2 on a bad endpoint', async () => {
    await expect(run('node', ['dist/cli/main.js', 'whois', '127.0.0.1:1'])).rejects.toMatchObject({ code: 1 });
    await expect(run('node', ['dist/cli/main.js', 'whois', 'localhost'])).rejects.toMatchObject({ code: 2 });
  });
});
