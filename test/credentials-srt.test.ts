// Credentials through the real srt-proxy (pinned, on Node 22) deciding with `portcullis
// decider`: the sandbox side sends the placeholder (from `decider --placeholders`), the decider's
// verdict carries `cred` and `credential`, and srt-proxy places the value as
// `Authorization: Bearer …` for the bound endpoint only; elsewhere the request is refused 403.
// srt-proxy resolves names through /etc/hosts in a mount namespace of its own (see
// decider-srt.test.ts), so it never asks a real resolver.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { ensureSrtInstalled, prepareSrtFiles, startSrtProxy, type SrtFiles } from './support/srt-proxy.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/cli/main.js');
const SECRET = `ghp_srt${Date.now().toString(36)}Zq81x`;

let sim: SimulatedInternet;
let work: string;
let srt: SrtFiles;

const POLICY = `version: 1
credentials:
  github:
    from: env:PC_SRT_TOKEN
network_policies:
  gh:
    endpoints:
      - host: creds.allowed.example
        ports: [80, 443]
        protocol: rest
        access: full
        credentials: [github]
        allow_cleartext_credentials: true
  open:
    endpoints:
      - host: other.allowed.example
        ports: [80, 443]
`;

function curl(port: number, url: string, header: string): { status: number; body: string } {
  const r = spawnSync('curl', ['-s', '--max-time', '10', '-x', `http://127.0.0.1:${port}`, '--cacert', srt.caCert, '-H', header, '-o', '-', '-w', '\n%{http_code}', url], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

beforeAll(async () => {
  ensureSrtInstalled();
  work = mkdtempSync(join(tmpdir(), 'pc-cred-srt-'));
  sim = await startSimulatedInternet({ hosts: { 'creds.allowed.example': {}, 'other.allowed.example': {} } });
  srt = prepareSrtFiles(work, sim);
  writeFileSync(join(work, 'policy.yaml'), POLICY);
}, 120_000);

afterAll(async () => {
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

it('a bound placeholder reaches the endpoint as the value through srt-proxy; elsewhere 403; no value in the audit', async () => {
  const audit = join(work, 'audit.jsonl');
  const placeholders = join(work, 'placeholders');
  const decider = spawn(process.execPath, [CLI, 'decider', '--policy', join(work, 'policy.yaml'), '--audit', audit, '--placeholders', placeholders], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PC_SRT_TOKEN: SECRET },
  });
  let deciderErr = '';
  decider.stderr!.on('data', (d: Buffer) => (deciderErr += d.toString()));
  const { proxy, port } = await startSrtProxy(srt, decider, `srt-proxy (decider: ${deciderErr})`);
  try {
    expect(statSync(placeholders).mode & 0o777).toBe(0o600);
    const placeholder = /^PC_SRT_TOKEN=(portcullis-cred-github-[a-z2-7]{26})$/m.exec(readFileSync(placeholders, 'utf8'))?.[1];
    expect(placeholder).toBeDefined();

    const ok = curl(port, 'https://creds.allowed.example/echo/srt', `Authorization: Bearer ${placeholder}`);
    expect(ok.status, ok.body).toBe(200);
    expect((JSON.parse(ok.body) as { headers: Record<string, string> }).headers.authorization).toBe(`Bearer ${SECRET}`);
    // Plain HTTP: the decider places it (allow_cleartext_credentials), and srt-proxy, which sets no
    // header on plain HTTP unless told to, refuses the request rather than send it without.
    const cleartext = curl(port, 'http://creds.allowed.example/echo/srt-plain', `Authorization: Bearer ${placeholder}`);
    expect(cleartext.status).toBe(403);
    expect(cleartext.body).toContain('plain-HTTP');
    expect(cleartext.body).not.toContain(SECRET);
    const elsewhere = curl(port, 'https://other.allowed.example/echo/srt-elsewhere', `Authorization: Bearer ${placeholder}`);
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body).toContain('credential_not_bound');
    const seen = (await (await fetch(`http://${sim.hosts['other.allowed.example']!.v4}/seen`)).json()) as Array<{ path: string }>;
    expect(seen.some((s) => s.path === '/echo/srt-elsewhere')).toBe(false);
    // Without a placeholder, nothing is placed.
    const plain = curl(port, 'https://creds.allowed.example/echo/plain', 'Authorization: Bearer mine');
    expect((JSON.parse(plain.body) as { headers: Record<string, string> }).headers.authorization).toBe('Bearer mine');
  } finally {
    proxy.kill('SIGTERM');
    await new Promise((resolve) => (proxy.exitCode !== null ? resolve(null) : proxy.once('exit', resolve)));
    decider.stdin!.destroy();
    decider.stdout!.destroy();
    await Promise.race([new Promise((resolve) => decider.once('exit', resolve)), new Promise((resolve) => setTimeout(resolve, 3000))]);
    decider.kill('SIGKILL');
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  const text = readFileSync(audit, 'utf8');
  expect(text).not.toContain(SECRET);
  expect(deciderErr).not.toContain(SECRET);
  const events = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events.filter((e) => e.credential_placed === 'github')).toHaveLength(2); // https and plain
  expect(events.find((e) => e.kind === 'credential_misuse')).toMatchObject({ host: 'other.allowed.example', credentials: ['github'] });
}, 120_000);
