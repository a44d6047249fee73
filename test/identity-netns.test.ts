// A client inside a network namespace the test creates: its socket row exists only in that
// namespace's table, so resolution must read /proc/<anchor>/net/… (the anchor is the first
// process of the namespace). Also a connection redirected by nft DNAT inside the namespace.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { IdentityResolver } from '../src/identity/resolver.js';
import { SockDiag } from '../src/identity/sock-diag.js';
import type { ConnectionTuple } from '../src/identity/types.js';
import { pythonBinary, readlinkF, waitFor } from './fixtures/identity/harness.js';

const CURL = readlinkF('/usr/bin/curl');
const PYTHON = pythonBinary();
const NS = `pcid${process.pid}n1`;
// Both ends of a veth pair live inside the namespace: an interface with an address and a route.
const VETH = `pcv${process.pid % 100000}`;

// The anchor: listens inside the namespace and, on each command line, starts a client there
// and reports the accepted connection as JSON.
const ANCHOR_SCRIPT = `
import json, socket, subprocess, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('0.0.0.0', 0))
srv.listen(16)
port = srv.getsockname()[1]
print(json.dumps({'port': port}), flush=True)
kids, conns = [], []
for line in sys.stdin:
    cmd = line.strip()
    if cmd == 'curl':
        kids.append(subprocess.Popen(['/usr/bin/curl', '-s', '-o', '/dev/null', 'http://127.0.0.1:%d/' % port]))
    elif cmd == 'redirected':
        kids.append(subprocess.Popen([sys.executable, '-c', "import socket; s = socket.create_connection(('203.0.113.5', 80)); s.recv(1)"]))
    else:
        continue
    conn, peer = srv.accept()
    conns.append(conn)
    print(json.dumps({'client': list(peer[:2]), 'server': list(conn.getsockname()[:2]), 'pid': kids[-1].pid}), flush=True)
for k in kids:
    k.kill()
`;

interface Accepted {
  tuple: ConnectionTuple;
  pid: number;
}

let anchor: ChildProcess | undefined;
let lines: string[] = [];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function nextLine(): Promise<string> {
  return waitFor(() => lines.shift(), 'a line from the anchor');
}

async function command(cmd: string): Promise<Accepted> {
  anchor!.stdin!.write(`${cmd}\n`);
  const report = JSON.parse(await nextLine()) as { client: [string, number]; server: [string, number]; pid: number };
  return {
    tuple: { clientAddress: report.client[0], clientPort: report.client[1], proxyAddress: report.server[0], proxyPort: report.server[1] },
    pid: report.pid,
  };
}

function cleanUp(): void {
  if (anchor?.pid && anchor.exitCode === null) {
    try {
      process.kill(-anchor.pid, 'SIGKILL'); // its process group: the anchor and its clients
    } catch {
      // already gone
    }
  }
  try {
    ip('netns', 'del', NS);
  } catch {
    // never created
  }
}

let port = 0;

beforeAll(async () => {
  try {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    ip('-n', NS, 'link', 'add', `${VETH}a`, 'type', 'veth', 'peer', 'name', `${VETH}b`);
    ip('-n', NS, 'addr', 'add', '198.51.100.1/24', 'dev', `${VETH}a`);
    ip('-n', NS, 'link', 'set', `${VETH}a`, 'up');
    ip('-n', NS, 'link', 'set', `${VETH}b`, 'up');
    ip('-n', NS, 'route', 'add', 'default', 'dev', `${VETH}a`);
    anchor = spawn('ip', ['netns', 'exec', NS, PYTHON, '-u', '-c', ANCHOR_SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    let buffered = '';
    anchor.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      lines.push(...parts.filter((l) => l.trim() !== ''));
    });
    port = (JSON.parse(await nextLine()) as { port: number }).port;
    // Inside the namespace, connections to 203.0.113.5:80 are redirected to the listener.
    execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], {
      input: `table ip pcidtest {\n chain out {\n  type nat hook output priority -100;\n  ip daddr 203.0.113.5 tcp dport 80 dnat to 198.51.100.1:${port}\n }\n}\n`,
    });
  } catch (err) {
    cleanUp();
    throw err;
  }
});

afterAll(() => {
  anchor?.stdin?.end();
  cleanUp();
  lines = [];
});

describe('a client inside a network namespace', () => {
  it('is not found through the proxy namespace table, and is found through its anchor', async () => {
    const { tuple, pid } = await command('curl');
    expect(readlinkF(`/proc/${anchor!.pid}/exe`)).toBe(PYTHON); // `ip netns exec` execs the command
    // Both sources: the namespace's /proc/<anchor>/net tables, and sock_diag inside it.
    for (const socketSource of ['procfs', 'auto'] as const) {
      const resolver = new IdentityResolver({ socketSource });
      try {
        const wrongTable = await resolver.resolve(tuple);
        expect(wrongTable).toMatchObject({ path: '<unresolved>', unresolved_reason: 'no_socket_row' });

        const identity = await resolver.resolve(tuple, { anchorPid: anchor!.pid! });
        expect(identity).toMatchObject({ path: CURL, pid });
        // The chain stops at the anchor.
        expect(identity.ancestors).toEqual([{ pid: anchor!.pid, path: PYTHON, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
      } finally {
        resolver.close();
      }
    }
    // In process (entering the namespace on this thread and back) and through the helper.
    const ownNamespace = readlinkSync('/proc/thread-self/ns/net');
    for (const diag of [new SockDiag(), new SockDiag({ native: false })]) {
      try {
        expect(await diag.lookup(tuple)).toBe('missing');
        expect(await diag.lookup(tuple, anchor!.pid!)).toMatchObject({ state: 1 });
        // This thread came back to its own namespace.
        expect(readlinkSync('/proc/thread-self/ns/net')).toBe(ownNamespace);
      } finally {
        diag.close();
      }
    }
  });

  it('resolves a DNAT-redirected connection on the client end and returns the original destination', async () => {
    const { tuple, pid } = await command('redirected');
    expect(tuple.proxyPort).toBe(port);
    const resolver = new IdentityResolver();
    onTestFinished(() => resolver.close());

    const identity = await resolver.resolve(tuple, { anchorPid: anchor!.pid!, redirected: true });
    expect(identity).toMatchObject({ path: PYTHON, pid, original_destination: { address: '203.0.113.5', port: 80 } });

    // Matching the full 4-tuple fails: the client's row names where it meant to go.
    const strict = await resolver.resolve(tuple, { anchorPid: anchor!.pid! });
    expect(strict).toMatchObject({ path: '<unresolved>', unresolved_reason: 'no_socket_row' });
  });

  it('portcullis whois --anchor finds the client of a listener inside the namespace', async () => {
    const { pid } = await command('curl');
    const { stdout } = await promisify(execFile)('node', ['dist/cli/main.js', 'whois', `127.0.0.1:${port}`, '--anchor', String(anchor!.pid)], {
      encoding: 'utf8',
    });
    const found = JSON.parse(stdout) as Array<{ identity: { path: string; pid: number } }>;
    expect(found.map((f) => f.identity)).toContainEqual(expect.objectContaining({ path: CURL, pid }));
  });
});
