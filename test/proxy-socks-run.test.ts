// SOCKS5 under `portcullis run`: CMD's ALL_PROXY / all_proxy name the proxy as socks5h://, a
// client that uses it reaches an allowed host through the proxy's SOCKS5 (audited as `socks`,
// counted in the run's summary) and is refused for a host no policy names.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const CLI = join(import.meta.dirname, '../dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';

let sim: SimulatedInternet;
let work: string;

function portcullisRun(args: string[], cmd: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'run', '--resolver', `${sim.dns.address}:${sim.dns.port}`, ...args, '--', ...cmd], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'api.socksrun.example': {}, 'other.socksrun.example': {} } });
  // Not under /tmp: CMD has a /tmp of its own.
  work = mkdtempSync('/var/tmp/portcullis-socks-run-');
  chmodSync(work, 0o755);
  writeFileSync(join(work, 'ca.pem'), sim.ca.certPem, { mode: 0o644 });
  writeFileSync(
    join(work, 'policy.yaml'),
    `version: 1
network_policies:
  api:
    endpoints:
      - { host: api.socksrun.example, port: 443, allowed_ips: ${DOCS} }
    binaries:
      - path: /usr/bin/curl
`,
  );
}, 60_000);

afterAll(async () => {
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('portcullis run: SOCKS5 through ALL_PROXY', () => {
  it('ALL_PROXY is socks5h:// on the proxy; curl through it is allowed, audited as socks, and in the summary', async () => {
    const audit = join(work, 'audit.jsonl');
    const ca = join(work, 'ca.pem');
    const script = [
      'echo "all=$ALL_PROXY lower=$all_proxy http=$HTTP_PROXY"',
      `curl -sS --max-time 10 --cacert ${ca} -x "$ALL_PROXY" https://api.socksrun.example/over-socks`,
      'echo',
      `curl -sS --max-time 10 --cacert ${ca} -x "$ALL_PROXY" https://other.socksrun.example/ || echo "refused: $?"`,
    ].join('; ');
    const r = await portcullisRun(['--policy', join(work, 'policy.yaml'), '--audit', audit], ['sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const vars = /all=(\S+) lower=(\S+) http=(\S+)/.exec(r.stdout);
    expect(vars, r.stdout).not.toBeNull();
    expect(vars![1]).toMatch(/^socks5h:\/\/[\d.]+:\d+$/);
    expect(vars![2]).toBe(vars![1]);
    // The same address as the HTTP proxy: one port for both.
    expect(vars![3]).toBe(vars![1]!.replace('socks5h:', 'http:'));
    expect(r.stdout).toContain('"path":"/over-socks"');
    expect(r.stdout).toContain('refused: 97');

    const events = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.kind === 'socks' && e.host === 'api.socksrun.example')).toMatchObject({ decision: 'allow', binary: '/usr/bin/curl', policy: 'api' });
    expect(events.find((e) => e.kind === 'socks' && e.host === 'other.socksrun.example')).toMatchObject({ decision: 'deny', error: 'policy_denied' });
    expect(r.stderr).toMatch(/✔ allowed\s+\d+\s+api\.socksrun\.example:443/);
    expect(r.stderr).toMatch(/other\.socksrun\.example:443/);
  }, 90_000);
});
