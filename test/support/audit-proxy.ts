// The real `portcullis proxy` CLI with an audit file, for the audit fault tests: a policy that
// denies every test request before any lookup (so no DNS and no upstream are needed), one audit
// `connect` event per request, and bounded waits.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/events.js';
import { rawExchange, type RawResponse } from '../fixtures/proxy/harness.js';

const CLI = join(import.meta.dirname, '../../dist/cli/main.js');

const POLICY = `version: 1
network_policies:
  nothing-the-tests-ask-for:
    endpoints:
      - { host: allowed.invalid, port: 443 }
    binaries:
      - path: /nonexistent/bin/client
`;

export interface CliProxy {
  child: ChildProcess;
  port: number;
  stderr(): string;
  /** Resolves with the exit code once the process has exited (null when killed by a signal). */
  exited: Promise<number | null>;
}

export async function waitFor(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startCliProxy(dir: string, auditFile: string, extra: string[] = []): Promise<CliProxy> {
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  const child = spawn(process.execPath, [
    CLI, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--no-watch',
    // Never asked (every request is denied before a lookup); loopback should it ever be.
    '--resolver', '127.0.0.1:9', '--header-timeout', '60000', '--audit', auditFile, ...extra,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('the proxy to listen', () => /listening on 127\.0\.0\.1:\d+/.test(stderr) || child.exitCode !== null, 20_000);
  const match = /listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
  if (!match) throw new Error(`the proxy did not start: ${stderr}`);
  return { child, port: Number(match[1]), stderr: () => stderr, exited };
}

export function connectRequest(host: string): string {
  return `CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`;
}

/** One CONNECT the policy denies: a 403 means one `connect` event for `host`. */
export async function deniedConnect(port: number, host: string): Promise<RawResponse> {
  return rawExchange(port, connectRequest(host));
}

/** A connection the proxy has accepted, its request sent later. */
export async function idleConnection(port: number): Promise<{ send(host: string): Promise<number> }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let raw = '';
  socket.on('data', (c: Buffer) => (raw += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  return {
    async send(host: string): Promise<number> {
      socket.write(connectRequest(host));
      await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
      socket.destroy();
      return Number(raw.split(' ')[1] ?? 0);
    },
  };
}

/** Every line of an audit file, parsed (a line that is not JSON fails the test here). */
/** The complete lines of an audit file: a last line without its newline is a write still in progress (a reader can see part of one). */
export function auditLines(file: string): AuditEvent[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop();
  return lines.filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEvent);
}

/** Sends SIGTERM and waits (at most `boundMs`) for the exit code; SIGKILL and a throw if it hangs. */
export async function stopCliProxy(proxy: Pick<CliProxy, 'child' | 'exited'>, boundMs = 10_000): Promise<number | null> {
  if (proxy.child.exitCode !== null || proxy.child.signalCode !== null) return proxy.exited;
  proxy.child.kill('SIGTERM');
  const code = await Promise.race([proxy.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), boundMs))]);
  if (code === 'hung') {
    proxy.child.kill('SIGKILL');
    throw new Error('the proxy did not exit on SIGTERM');
  }
  return code;
}
