// `portcullis decider` as the policy brain of the real srt-proxy (the sandbox-runtime's proxy,
// pinned, on Node 22): curl through srt-proxy over HTTP and HTTPS (srt-proxy terminates TLS with a
// CA handed in on --ca-fd), each request decided by our policy over the decider protocol. srt-proxy
// resolves names with getaddrinfo: it runs in a mount namespace of its own whose /etc/hosts names
// the simulated internet and whose resolv.conf points at nothing, so it never asks a real resolver.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { ensureSrtInstalled, prepareSrtFiles, startSrtProxy, type SrtFiles } from './support/srt-proxy.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/cli/main.js');

let sim: SimulatedInternet;
let work: string;
let srt: SrtFiles;

const POLICY = `version: 1
network_policies:
  api:
    endpoints:
      - host: api.allowed.example
        ports: [80, 443]
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
  tools:
    endpoints:
      - host: "w-*.allowed.example"
        ports: [80, 443]
  git-only:
    endpoints:
      - host: git.allowed.example
        port: 443
    binaries:
      - path: /usr/bin/git
`;

interface Srt {
  proxy: ChildProcess;
  decider: ChildProcess;
  port: number;
  auditFile: string;
  deciderExit: Promise<number | null>;
  stop(): Promise<void>;
}

async function startSrt(policyFile: string, extra: string[] = []): Promise<Srt> {
  const auditFile = join(work, `audit-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
  const decider = spawn(process.execPath, [CLI, 'decider', '--policy', policyFile, '--audit', auditFile, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  let deciderErr = '';
  decider.stderr!.on('data', (d: Buffer) => (deciderErr += d.toString()));
  const deciderExit = new Promise<number | null>((resolve) => decider.once('exit', (code) => resolve(code)));
  const { proxy, port } = await startSrtProxy(srt, decider, `srt-proxy (decider: ${deciderErr})`);
  return {
    proxy,
    decider,
    port,
    auditFile,
    deciderExit,
    async stop() {
      proxy.kill('SIGTERM');
      await new Promise((resolve) => (proxy.exitCode !== null ? resolve(null) : proxy.once('exit', resolve)));
      // This process holds the other ends of the decider's pipes too: let go, so it sees the end.
      decider.stdin!.destroy();
      decider.stdout!.destroy();
      await Promise.race([deciderExit, new Promise((resolve) => setTimeout(resolve, 3000))]);
      decider.kill('SIGKILL');
    },
  };
}

function curl(port: number, url: string): { status: number; connect: number; body: string; headers: string } {
  const headerFile = join(work, 'headers.txt');
  const r = spawnSync('curl', ['-s', '--max-time', '10', '-x', `http://127.0.0.1:${port}`, '--cacert', srt.caCert, '-D', headerFile, '-o', '-', '-w', '\n%{http_connect} %{http_code}', url], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  const [connect, status] = (lines.pop() ?? '').split(' ').map(Number) as [number, number];
  return { status, connect, body: lines.join('\n'), headers: existsSync(headerFile) ? readFileSync(headerFile, 'utf8') : '' };
}

async function auditEvents(file: string): Promise<Array<Record<string, unknown>>> {
  // The sink writes in batches within about 20 ms.
  await new Promise((resolve) => setTimeout(resolve, 100));
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeAll(async () => {
  ensureSrtInstalled();
  work = mkdtempSync(join(tmpdir(), 'pc-srt-'));
  sim = await startSimulatedInternet({ hosts: { 'api.allowed.example': {}, 'w-1.allowed.example': {}, 'x.allowed.example': {}, 'unknown.example': {}, 'git.allowed.example': {} } });
  srt = prepareSrtFiles(work, sim);
  writeFileSync(join(work, 'policy.yaml'), POLICY);
}, 120_000);

afterAll(async () => {
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('srt-proxy deciding through portcullis decider', () => {
  it('allows by the policy over HTTP and HTTPS, refuses by deny rules, binaries and srt-proxy\'s list, and audits each decision', async () => {
    const srt = await startSrt(join(work, 'policy.yaml'));
    try {
      const plain = curl(srt.port, 'http://api.allowed.example/v1/ok');
      expect(plain.status).toBe(200);
      expect(JSON.parse(plain.body)).toMatchObject({ host: 'api.allowed.example', path: '/v1/ok', tls: false });

      const secure = curl(srt.port, 'https://api.allowed.example/v1/ok?x=1');
      expect(secure.status).toBe(200);
      expect(JSON.parse(secure.body)).toMatchObject({ host: 'api.allowed.example', path: '/v1/ok?x=1', tls: true });

      const admin = curl(srt.port, 'https://api.allowed.example/v1/admin/users');
      expect(admin.status).toBe(403);
      expect(admin.body).toContain('deny rule');

      const post = curl(srt.port, 'http://api.allowed.example/v2/other');
      expect(post.status).toBe(403);
      expect(post.body).toContain('method/path rules');

      // Widened to *.allowed.example for srt-proxy's list; the policy still decides.
      expect(curl(srt.port, 'https://w-1.allowed.example/').status).toBe(200);
      const x = curl(srt.port, 'https://x.allowed.example/');
      expect(x.status).toBe(403);
      expect(x.body).toContain('x.allowed.example');

      // The caller is <unresolved> to srt-proxy: a policy with binaries never allows it.
      const git = curl(srt.port, 'https://git.allowed.example/repo');
      expect(git.status).toBe(403);
      expect(git.body).toContain('git-only');

      // Not in the hello's list: srt-proxy refuses the CONNECT without asking.
      const unknown = curl(srt.port, 'https://unknown.example/');
      expect(unknown.connect).toBe(403);
      expect(unknown.status).toBe(0);
      expect(curl(srt.port, 'http://unknown.example/').status).toBe(403);

      const events = await auditEvents(srt.auditFile);
      const decided = events.filter((e) => e.kind === 'http').map((e) => `${String(e.decision)} ${String(e.host)} ${String(e.path)}`);
      expect(decided).toEqual([
        'allow api.allowed.example /v1/ok',
        'allow api.allowed.example /v1/ok',
        'deny api.allowed.example /v1/admin/users',
        'deny api.allowed.example /v2/other',
        'allow w-1.allowed.example /',
        'deny x.allowed.example /',
        'deny git.allowed.example /repo',
      ]);
      expect(events.every((e) => e.kind !== 'http' || e.binary === null)).toBe(true);
    } finally {
      await srt.stop();
    }
    expect(await srt.deciderExit).toBe(0);
  }, 90_000);

  it('in report-only mode lets a would-deny through and records it as audit', async () => {
    const srt = await startSrt(join(work, 'policy.yaml'), ['--report-only']);
    try {
      expect(curl(srt.port, 'https://api.allowed.example/v1/admin/users').status).toBe(200);
      const events = (await auditEvents(srt.auditFile)).filter((e) => e.kind === 'http');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ decision: 'audit', allow: true, path: '/v1/admin/users' });
      expect(String(events[0]!.reason)).toMatch(/^report-only, would deny: .*deny rule/);
    } finally {
      await srt.stop();
    }
  }, 90_000);

  it('applies a reloaded policy to the next request (SIGHUP), and keeps the last good one on a bad file', async () => {
    const file = join(work, 'reload.yaml');
    writeFileSync(file, POLICY);
    const srt = await startSrt(file, ['--no-watch']);
    try {
      expect(curl(srt.port, 'https://api.allowed.example/v1/ok').status).toBe(200);
      writeFileSync(file, POLICY.replace('path: "/v1/**"', 'path: "/v9/**"'));
      srt.decider.kill('SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(curl(srt.port, 'https://api.allowed.example/v1/ok').status).toBe(403);
      writeFileSync(file, 'version: 1\nnetwork_policies: [oops\n');
      srt.decider.kill('SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(curl(srt.port, 'https://api.allowed.example/v9/ok').status).toBe(200);
      const reloads = (await auditEvents(srt.auditFile)).filter((e) => e.kind === 'reload').map((e) => e.ok);
      expect(reloads).toEqual([true, false]);
    } finally {
      await srt.stop();
    }
  }, 90_000);
});
