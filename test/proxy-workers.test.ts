// `portcullis proxy --workers N`, the real CLI: N worker processes on the same listening port,
// each accepting itself; reload, rotation and stop through the primary; a dead worker replaced;
// the audit file written by all of them, whole lines only. Clients are this test's process (its
// executable is the caller the policy names); every tunnel goes to an upstream proxy on loopback
// that answers for the target itself (no lookup, no traffic off this machine).
import { existsSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { auditLines, connectRequest, waitFor } from './support/audit-proxy.js';
import { inBatches } from './support/batches.js';
import { cli } from './support/cli.js';
import {
  acceptedPerWorker,
  alive,
  holdsListener,
  startEchoUpstreamProxy,
  startProxyCli,
  TARGET,
  terminate,
  workerPids,
  type UpstreamProxy,
  type WorkersProxy,
} from './support/proxy-workers.js';
import { echoThrough, openTunnel, rawExchange } from './fixtures/proxy/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-proxy-workers-'));
const CLIENT = realpathSync(process.execPath);
const TOKEN = 'real-token-value-42';
let upstream: UpstreamProxy;
const running: WorkersProxy[] = [];
const pids: number[] = [];

function policy(port = 443): string {
  return `version: 1
credentials:
  tok:
    from: env:PC_WORKERS_TOKEN
network_policies:
  echo:
    endpoints:
      - { host: 11.22.33.44, port: ${port} }
      - host: 11.22.33.44
        port: 80
        protocol: rest
        access: full
        credentials: [tok]
        allow_cleartext_credentials: true
    binaries:
      - path: ${CLIENT}
`;
}

let files = 0;
function freshFiles(text = policy()): { policyFile: string; auditFile: string } {
  const n = ++files;
  const policyFile = join(dir, `policy-${n}.yaml`);
  writeFileSync(policyFile, text);
  return { policyFile, auditFile: join(dir, `audit-${n}.jsonl`) };
}

/** The proxy with 2 workers (unless `args` says otherwise), through the loopback upstream proxy. */
async function start(policyFile: string, args: string[]): Promise<WorkersProxy> {
  process.env.PC_WORKERS_TOKEN = TOKEN;
  const proxy = await startProxyCli(['--policy', policyFile, '--upstream-proxy', `http://127.0.0.1:${upstream.port}`, ...args]);
  running.push(proxy);
  pids.push(...workerPids(proxy.child.pid!));
  return proxy;
}

async function tunnel(port: number): Promise<net.Socket> {
  const t = await openTunnel(port, TARGET);
  if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}: ${t.response.raw}`);
  const echoed = await echoThrough(t.socket, Buffer.from('ping'));
  if (echoed.toString() !== 'ping') throw new Error(`echo: ${echoed.toString()}`);
  return t.socket;
}

/** `count` CONNECTs to the target, `concurrency` at a time, each closed once answered: their statuses. */
async function statuses(port: number, count: number, concurrency = 25): Promise<number[]> {
  return inBatches(count, concurrency, async () => {
    const t = await openTunnel(port, TARGET);
    t.socket.destroy();
    return t.status;
  });
}

beforeAll(async () => {
  upstream = await startEchoUpstreamProxy();
});

afterEach(async () => {
  for (const proxy of running.splice(0)) {
    proxy.child.kill('SIGKILL');
    await Promise.race([proxy.exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
  for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

afterAll(async () => {
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('portcullis proxy --workers', () => {
  it('serves 200 CONNECTs on one port from both workers, identifying the caller; SIGTERM closes them, exits 0, every event written once', async () => {
    const { policyFile, auditFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--audit', auditFile]);
    expect(proxy.stderr()).toMatch(/listening on 127\.0\.0\.1:\d+, on through the upstream proxy 127\.0\.0\.1:\d+, 2 workers\n/);
    expect(proxy.stderr().match(/listening on/g)).toHaveLength(1);
    const workers = workerPids(proxy.child.pid!);
    expect(workers).toHaveLength(2);

    const sockets = await inBatches(200, 50, () => tunnel(proxy.port));
    try {
      // Every tunnel is open: each accepted connection sits in the fd table of the worker that took it.
      const perWorker = acceptedPerWorker(workers, proxy.port);
      expect([...perWorker.values()].reduce((a, b) => a + b, 0)).toBe(200);
      for (const [pid, count] of perWorker) expect(count, `connections accepted by worker ${pid}`).toBeGreaterThan(0);
      expect(await terminate(proxy)).toBe(0);
    } finally {
      for (const s of sockets) s.destroy();
    }
    for (const pid of workers) expect(alive(pid)).toBe(false);
    const events = auditLines(auditFile);
    const connects = events.filter((e) => e.kind === 'connect');
    expect(connects).toHaveLength(200);
    expect(connects.every((e) => e.decision === 'allow' && e.binary === CLIENT && e.pid === process.pid)).toBe(true);
    const tunnels = events.filter((e) => e.kind === 'tunnel');
    expect(tunnels).toHaveLength(200);
    expect(tunnels.every((e) => e.closed_by === 'shutdown')).toBe(true);
  });

  it('--workers 1 (the default) forks nothing, and SIGTERM audits the tunnels it closes', async () => {
    const { policyFile, auditFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '1', '--audit', auditFile]);
    expect(proxy.stderr()).not.toContain('workers');
    const sockets = await inBatches(20, 20, () => tunnel(proxy.port));
    try {
      expect(workerPids(proxy.child.pid!)).toEqual([]);
      expect(await terminate(proxy)).toBe(0);
    } finally {
      for (const s of sockets) s.destroy();
    }
    const tunnels = auditLines(auditFile).filter((e) => e.kind === 'tunnel');
    expect(tunnels).toHaveLength(20);
    expect(tunnels.every((e) => e.closed_by === 'shutdown')).toBe(true);
  });

  it('SIGTERM under load: exit 0, and the audit file holds exactly one whole JSON line per connection', async () => {
    const { policyFile, auditFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--audit', auditFile]);
    // Denied before any lookup, one `connect` event each, every host its own.
    const hosts = Array.from({ length: 600 }, (_, i) => `host-${i}.invalid`);
    const answers = await inBatches(hosts.length, 40, async (i) => (await rawExchange(proxy.port, connectRequest(hosts[i]!))).status);
    expect(answers.every((s) => s === 403)).toBe(true);
    expect(await terminate(proxy)).toBe(0);
    const text = readFileSync(auditFile, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const seen = auditLines(auditFile) // throws on a line that is not JSON
      .filter((e) => e.kind === 'connect')
      .map((e) => String(e.host));
    expect(seen.length).toBe(hosts.length);
    expect([...seen].sort()).toEqual([...hosts].sort());
  });

  it('log rotation: after a move and SIGUSR1 every worker writes to the new file; each event lands once', async () => {
    const { policyFile, auditFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--audit', auditFile]);
    const deny = async (label: string, count: number): Promise<string[]> => {
      const hosts = Array.from({ length: count }, (_, i) => `${label}-${i}.invalid`);
      await inBatches(count, 40, (i) => rawExchange(proxy.port, connectRequest(hosts[i]!)));
      return hosts;
    };
    const before = await deny('before', 200);
    renameSync(auditFile, `${auditFile}.1`);
    proxy.child.kill('SIGUSR1');
    await waitFor('a new file at the path', () => existsSync(auditFile), 10_000);
    const after = await deny('after', 200);
    expect(await terminate(proxy)).toBe(0);
    const hostsIn = (file: string): string[] => auditLines(file).filter((e) => e.kind === 'connect').map((e) => String(e.host));
    const [old, fresh] = [hostsIn(`${auditFile}.1`), hostsIn(auditFile)];
    expect([...old, ...fresh].sort()).toEqual([...before, ...after].sort());
    // Sent once the new file was there: whichever worker took them wrote them to it.
    expect(after.every((h) => fresh.includes(h))).toBe(true);
  });

  it('SIGHUP reloads every worker: a refused policy leaves the previous one in all, a new one denies in all', async () => {
    const { policyFile, auditFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--audit', auditFile, '--no-watch']);
    writeFileSync(policyFile, 'version: 1\nnetwork_policies: [broken');
    proxy.child.kill('SIGHUP');
    await waitFor('the refusal', () => proxy.stderr().includes('reload refused, previous policy stays'), 20_000);
    expect((await statuses(proxy.port, 100)).every((s) => s === 200)).toBe(true);

    writeFileSync(policyFile, policy(8443));
    proxy.child.kill('SIGHUP');
    await waitFor('the reload', () => proxy.stderr().includes('policy reloaded in 2 workers'), 20_000);
    expect((await statuses(proxy.port, 100)).every((s) => s === 403)).toBe(true);
    expect(await terminate(proxy)).toBe(0);
    // Each worker reloaded (and refused) for itself.
    const reloads = auditLines(auditFile).filter((e) => e.kind === 'reload');
    expect(reloads.filter((e) => e.ok === false)).toHaveLength(2);
    expect(reloads.filter((e) => e.ok === true)).toHaveLength(2);
  });

  it('a change of the policy file reloads every worker', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2']);
    expect((await statuses(proxy.port, 20)).every((s) => s === 200)).toBe(true);
    writeFileSync(policyFile, policy(8443));
    await waitFor('the reload', () => proxy.stderr().includes('policy reloaded in 2 workers'), 20_000);
    expect((await statuses(proxy.port, 100)).every((s) => s === 403)).toBe(true);
  });

  it('a worker killed with SIGKILL is replaced on the same port, and service goes on', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2']);
    const [victim, survivor] = workerPids(proxy.child.pid!) as [number, number];
    process.kill(victim, 'SIGKILL');
    await waitFor('the replacement', () => /worker \d \(pid \d+\) serves/.test(proxy.stderr()), 20_000);
    expect(proxy.stderr()).toContain(`(pid ${victim}) died (signal SIGKILL); starting another`);
    const now = workerPids(proxy.child.pid!);
    pids.push(...now);
    expect(now).toHaveLength(2);
    expect(now).toContain(survivor);
    expect(now).not.toContain(victim);
    expect(holdsListener(now, proxy.port)).toEqual([true, true]);
    const sockets = await inBatches(60, 30, () => tunnel(proxy.port));
    try {
      const perWorker = acceptedPerWorker(now, proxy.port);
      expect([...perWorker.values()].reduce((a, b) => a + b, 0)).toBe(60);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Both at once: no worker is left holding the socket, and the port the system chose stays.
    for (const pid of now) process.kill(pid, 'SIGKILL');
    await waitFor('two more replacements', () => (proxy.stderr().match(/\) serves\n/g) ?? []).length >= 3, 20_000);
    const third = workerPids(proxy.child.pid!);
    pids.push(...third);
    expect(third.filter((pid) => now.includes(pid))).toEqual([]);
    expect(holdsListener(third, proxy.port)).toEqual([true, true]);
    const again = await inBatches(20, 20, () => tunnel(proxy.port));
    for (const s of again) s.destroy();
    expect(await terminate(proxy)).toBe(0);
  });

  it('a replacement that refuses the policy file as it now is waits for the next reload; the other worker serves on', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--no-watch']);
    const [victim] = workerPids(proxy.child.pid!) as [number, number];
    writeFileSync(policyFile, 'version: 1\nnetwork_policies: [broken');
    process.kill(victim, 'SIGKILL');
    await waitFor('the refusal', () => proxy.stderr().includes('could not start (said above); it is started again at the next reload'), 20_000);
    expect(workerPids(proxy.child.pid!)).toHaveLength(1);
    expect((await statuses(proxy.port, 40)).every((s) => s === 200)).toBe(true);

    writeFileSync(policyFile, policy(8443));
    proxy.child.kill('SIGHUP');
    await waitFor('the reload and the new worker', () => proxy.stderr().includes('policy reloaded in 1 worker (') && /\) serves\n/.test(proxy.stderr()), 20_000);
    const workers = workerPids(proxy.child.pid!);
    pids.push(...workers);
    expect(holdsListener(workers, proxy.port)).toEqual([true, true]);
    expect((await statuses(proxy.port, 100)).every((s) => s === 403)).toBe(true);
    expect(await terminate(proxy)).toBe(0);
  });

  it('when workers keep dying, the primary stops the rest and exits 1', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2']);
    const killed = new Set<number>();
    // Every worker killed as soon as it appears (replacements too, before they even listen).
    for (let round = 0; round < 200 && proxy.child.exitCode === null; round++) {
      for (const pid of workerPids(proxy.child.pid!)) {
        if (killed.has(pid)) continue;
        killed.add(pid);
        pids.push(pid);
        process.kill(pid, 'SIGKILL');
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitFor('the primary to give up', () => proxy.child.exitCode !== null, 20_000);
    expect(proxy.child.exitCode).toBe(1);
    expect(proxy.stderr()).toMatch(/5 deaths within 10 s, stopping/);
    expect(killed.size).toBeGreaterThanOrEqual(5);
    for (const pid of killed) expect(alive(pid)).toBe(false);
  });

  it('workers do not outlive a primary killed outright', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2']);
    const workers = workerPids(proxy.child.pid!);
    expect(workers).toHaveLength(2);
    proxy.child.kill('SIGKILL');
    await waitFor('the workers to exit', () => workers.every((pid) => !alive(pid)), 10_000);
  });

  it('every worker swaps the placeholders of the one placeholder file (written once, by the primary)', async () => {
    const { policyFile } = freshFiles();
    const file = join(dir, 'placeholders.env');
    const proxy = await start(policyFile, ['--workers', '2', '--placeholders', file]);
    const placeholder = /^PC_WORKERS_TOKEN=(portcullis-cred-tok-[a-z2-7]{26})$/m.exec(readFileSync(file, 'utf8'))?.[1];
    expect(placeholder).toBeDefined();
    const request = `GET http://11.22.33.44/v1/x HTTP/1.1\r\nHost: 11.22.33.44\r\nAuthorization: Bearer ${placeholder}\r\n\r\n`;
    const answers = await inBatches(60, 20, () => rawExchange(proxy.port, request));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body).toContain(`Bearer ${TOKEN}`);
    }
  });

  it('--audit - with workers: stdout carries whole lines only, each event once', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--audit', '-']);
    const hosts = Array.from({ length: 400 }, (_, i) => `stdout-${i}.invalid`);
    await inBatches(hosts.length, 40, (i) => rawExchange(proxy.port, connectRequest(hosts[i]!)));
    expect(await terminate(proxy)).toBe(0);
    const lines = proxy.stdout().split('\n').filter((l) => l !== '');
    const seen = lines.map((l) => JSON.parse(l) as { kind: string; host?: string }).filter((e) => e.kind === 'connect').map((e) => e.host);
    expect([...seen].sort()).toEqual([...hosts].sort());
  });

  it('--max-connections is the total across the workers', async () => {
    const { policyFile } = freshFiles();
    const proxy = await start(policyFile, ['--workers', '2', '--max-connections', '4']);
    const opened = await inBatches(12, 12, () => openTunnel(proxy.port, TARGET));
    try {
      const served = opened.filter((t) => t.status === 200).length;
      // Each worker admits 2: however the kernel spread the 12, at most 4 were served.
      expect(served).toBeGreaterThanOrEqual(2);
      expect(served).toBeLessThanOrEqual(4);
      expect(opened.filter((t) => t.status === 503)).toHaveLength(12 - served);
    } finally {
      for (const t of opened) t.socket.destroy();
    }
  });

  it('bad input exits 2 with the single process\'s message, before any worker starts', async () => {
    const { policyFile } = freshFiles('version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - { host: "*", port: 443 }\n');
    const one = await cli('proxy', '--policy', policyFile, '--listen', '127.0.0.1:0');
    const two = await cli('proxy', '--policy', policyFile, '--listen', '127.0.0.1:0', '--workers', '2');
    expect(one.code).toBe(2);
    expect(two.code).toBe(2);
    expect(two.stderr).toBe(one.stderr);
    expect(two.stderr).toContain(`${policyFile}:5:`);
    const ca = await cli('proxy', '--policy', freshFiles().policyFile, '--listen', '127.0.0.1:0', '--workers', '2', '--ca-cert', join(dir, 'missing.crt'), '--ca-key', join(dir, 'missing.key'));
    expect(ca.code).toBe(2);
    expect(ca.stderr).toContain('missing.crt');
    expect(ca.stderr).not.toMatch(/worker \d/);
  });

  it('--workers must be auto or a positive number, and does not go with --config', async () => {
    const { policyFile } = freshFiles();
    for (const bad of ['0', 'two', '-1', '1.5']) {
      const r = await cli('proxy', '--policy', policyFile, '--listen', '127.0.0.1:0', '--workers', bad);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toMatch(/--workers.*must be auto or a whole number/);
    }
    const config = join(dir, 'opa.yaml');
    writeFileSync(config, 'services: {}\n');
    const r = await cli('proxy', '--config', config, '--listen', '127.0.0.1:0', '--workers', '2');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--workers above 1 does not go with --config');
  });
});
