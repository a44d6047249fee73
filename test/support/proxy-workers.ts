// For the tests of `portcullis proxy --workers N`: the real CLI started with an upstream proxy on
// loopback (so every allowed tunnel stays on this machine: the target is an IP literal, never
// looked up, and the upstream answers CONNECT itself and echoes), the primary's worker processes
// from /proc, and which worker holds which accepted connection (its fd table against the
// kernel's socket table). Every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { stopCliProxy, waitFor } from './audit-proxy.js';
import { listenOnLoopback } from './ports.js';

const CLI = join(import.meta.dirname, '../../dist/cli/main.js');

/** The target every allowed tunnel names: public, so the SSRF check passes, and never dialed (the upstream proxy answers for it). */
export const TARGET = '11.22.33.44:443';

export interface UpstreamProxy {
  port: number;
  /** CONNECT requests it has answered. */
  connects(): number;
  close(): Promise<void>;
}

/**
 * An HTTP proxy on loopback that answers every CONNECT with 200 and then echoes the tunnel, and
 * any other request (plain HTTP in absolute form) with its own head as the body.
 */
export async function startEchoUpstreamProxy(): Promise<UpstreamProxy> {
  let connects = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onHead);
      if (!head.subarray(0, 8).toString('latin1').startsWith('CONNECT ')) {
        const body = head.subarray(0, end + 4);
        s.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]));
        return;
      }
      connects++;
      s.write('HTTP/1.1 200 Connection established\r\n\r\n');
      if (head.length > end + 4) s.write(head.subarray(end + 4));
      s.on('data', (c: Buffer) => s.write(c));
    };
    s.on('data', onHead);
  });
  const port = await listenOnLoopback(server);
  return {
    port,
    connects: () => connects,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

export interface WorkersProxy {
  child: ChildProcess;
  port: number;
  stderr(): string;
  stdout(): string;
  exited: Promise<number | null>;
}

/** `portcullis proxy ARGS…` (the test gives --policy, --workers and the rest); resolves once it prints its listening line. */
export async function startProxyCli(args: string[]): Promise<WorkersProxy> {
  const child = spawn(process.execPath, [CLI, 'proxy', '--listen', '127.0.0.1:0', '--resolver', '127.0.0.1:9', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('the proxy to listen', () => /listening on 127\.0\.0\.1:\d+/.test(stderr) || child.exitCode !== null, 30_000);
  const match = /listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
  if (!match) throw new Error(`the proxy did not start: ${stderr}`);
  return { child, port: Number(match[1]), stderr: () => stderr, stdout: () => stdout, exited };
}

/** Parent pid of each process, from /proc. */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      out.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The worker processes: the primary's children. */
export function workerPids(primary: number): number[] {
  return [...parents()].filter(([, ppid]) => ppid === primary).map(([pid]) => pid).sort((a, b) => a - b);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Inodes of the sockets a process holds open. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Inodes of the sockets in `state` (01 established, 0A listening) whose local end is `port`. */
function socketsOn(port: number, state: '01' | '0A'): Set<string> {
  const out = new Set<string>();
  for (const file of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const line of readFileSync(file, 'latin1').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== state) continue;
      if (parseInt(f[1]!.split(':')[1]!, 16) === port) out.add(f[9]!);
    }
  }
  return out;
}

/** Whether each worker holds the socket listening on `port`. */
export function holdsListener(workers: number[], port: number): boolean[] {
  const listening = socketsOn(port, '0A');
  return workers.map((pid) => [...socketInodes(pid)].some((i) => listening.has(i)));
}

/** How many of the connections accepted on `port` each worker holds. */
export function acceptedPerWorker(workers: number[], port: number): Map<number, number> {
  const accepted = socketsOn(port, '01');
  return new Map(workers.map((pid) => [pid, [...socketInodes(pid)].filter((i) => accepted.has(i)).length]));
}

/** Sends SIGTERM and waits (bounded) for the exit code; SIGKILL and a throw if it hangs. */
export function terminate(proxy: WorkersProxy): Promise<number | null> {
  return stopCliProxy(proxy, 20_000);
}
