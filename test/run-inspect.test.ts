// TLS inspection under `portcullis run`, end to end: real clients in the sandbox, none given a CA
// flag (trust comes from the run's injected bundle), against HTTPS servers of the simulated
// internet; each request decided by the endpoint's rules. Also git over HTTPS from a
// `git http-backend`: clone allowed by the rules, push refused by a deny rule.
// Work files live under /var/tmp (CMD has a /tmp of its own).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitServer, createBareRepository, type GitServer } from '../src/sim/git-server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';
const API = 'api.inspect.example';
const GIT = 'git.inspect.example';
const GIT_PORT = 8443;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let sim: SimulatedInternet;
let git: GitServer | undefined;
let work: string;
let policy: string;
let upstreamCa: string;

function run(cmd: string[], audit: string): Promise<RunResult> {
  const args = ['run', '--quiet', '--policy', policy, '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--upstream-ca', upstreamCa, '--audit', audit, '--', ...cmd];
  const child = spawn(process.execPath, [CLI, ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

function auditEvents(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** `name=value` lines of an output (the value is the rest of the line). */
function fields(output: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of output.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) map.set(line.slice(0, at), line.slice(at + 1));
  }
  return map;
}

const PY_CLIENTS = `
import json, sys, urllib.request, urllib.error
def get(url):
    try:
        r = urllib.request.urlopen(url, timeout=10)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
base = sys.argv[1]
for name, path in (("urllib-allowed", "/v1/py-urllib"), ("urllib-denied", "/v1/admin/py")):
    status, body = get(base + path)
    print(f"{name}={status} {body}")
try:
    import requests
except ImportError:
    print("requests=skipped: the requests module is not installed for this python3")
else:
    r = requests.get(base + "/v1/py-requests", timeout=10)
    print(f"requests={r.status_code} {r.text}")
`;

const NODE_CLIENT = `
const https = require('https');
const get = (path) => new Promise((resolve) => {
  https.get('https://' + process.argv[2] + path, (res) => {
    let body = ''; res.on('data', (d) => (body += d)); res.on('end', () => resolve(res.statusCode + ' ' + body));
  }).on('error', (e) => resolve('error ' + e.code + ' ' + e.message));
});
(async () => {
  console.log('node-allowed=' + await get('/v1/node'));
  console.log('node-denied=' + await get('/v2/node'));
  for (const path of ['/v1/node-fetch', '/v1/admin/node-fetch']) {
    const line = await fetch('https://' + process.argv[2] + path).then(async (r) => r.status + ' ' + await r.text(), (e) => 'error ' + (e.cause?.code ?? e.message));
    console.log('fetch' + path + '=' + line);
  }
})();
`;

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { [API]: {}, [GIT]: {} } });
  work = mkdtempSync('/var/tmp/portcullis-run-inspect-');
  chmodSync(work, 0o755);
  upstreamCa = join(work, 'sim-ca.pem');
  writeFileSync(upstreamCa, sim.ca.certPem, { mode: 0o644 });
  mkdirSync(join(work, 'out'), { mode: 0o1777 });
  chmodSync(join(work, 'out'), 0o1777);
  writeFileSync(join(work, 'clients.py'), PY_CLIENTS, { mode: 0o644 });
  writeFileSync(join(work, 'client.js'), NODE_CLIENT, { mode: 0o644 });

  const repos = join(work, 'repos');
  mkdirSync(repos);
  createBareRepository(repos, 'repo', 'inspected clone\n');
  git = await startGitServer(sim.netns, { projectRoot: repos, port: GIT_PORT, cert: await sim.ca.issue([GIT]) });

  policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    `version: 1
network_policies:
  api:
    endpoints:
      - host: ${API}
        port: 443
        protocol: rest
        allowed_ips: ${DOCS}
        rules:
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
    binaries:
      - path: /usr/bin/curl
      - path: /usr/bin/python3*
      - path: /usr/bin/node
      - path: ${process.execPath}
  code:
    endpoints:
      - host: ${GIT}
        port: ${GIT_PORT}
        protocol: rest
        allowed_ips: ${DOCS}
        rules:
          - allow: { method: GET, path: "/repo.git/info/refs" }
          - allow: { method: POST, path: "/repo.git/git-upload-pack" }
        deny_rules:
          - { method: "*", path: "/repo.git/git-receive-pack" }
    binaries:
      - path: /usr/bin/git
      - path: /usr/lib/git-core/**
`,
  );
}, 60_000);

afterAll(async () => {
  await git?.close();
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('portcullis run: inspected HTTPS with trust from the run alone', () => {
  it('curl over HTTP/1.1 and HTTP/2: an allowed path answered, a denied one a 403 JSON body; audited with tls and alpn', async () => {
    const audit = join(work, 'curl.jsonl');
    const script = `for v in --http1.1 --http2; do
  echo "ok$v=$(curl -sS --max-time 10 $v -w ' %{http_code} %{http_version}' https://${API}/v1/curl$v 2>&1)"
  echo "deny$v=$(curl -sS --max-time 10 $v -w ' %{http_code}' https://${API}/v1/admin/curl$v 2>&1 | tr -d '\\n')"
  echo "other$v=$(curl -sS --max-time 10 $v -w ' %{http_code}' https://${API}/v2/curl$v 2>&1 | tr -d '\\n')"
done`;
    const result = await run(['sh', '-c', script], audit);
    expect(result.code, result.stderr).toBe(0);
    const out = fields(result.stdout);
    for (const [flag, version] of [['--http1.1', '1.1'], ['--http2', '2']] as const) {
      const ok = out.get(`ok${flag}`) ?? '';
      expect(ok, result.stdout).toMatch(new RegExp(` 200 ${version.replace('.', '\\.')}$`));
      expect(JSON.parse(ok.slice(0, ok.lastIndexOf('}') + 1))).toMatchObject({ host: API, method: 'GET', path: `/v1/curl${flag}`, tls: true });
      for (const name of ['deny', 'other']) {
        const denied = out.get(`${name}${flag}`) ?? '';
        expect(denied, result.stdout).toMatch(/ 403$/);
        expect(JSON.parse(denied.slice(0, denied.lastIndexOf('}') + 1))).toMatchObject({ error: 'policy_denied' });
      }
    }

    const http = auditEvents(audit).filter((e) => e.kind === 'http');
    const find = (path: string) => http.find((e) => e.path === path);
    expect(find('/v1/curl--http1.1')).toMatchObject({ decision: 'allow', status: 200, tls: true, alpn: 'http/1.1', method: 'GET', binary: '/usr/bin/curl', policy: 'api', host: API });
    expect(find('/v1/curl--http2')).toMatchObject({ decision: 'allow', status: 200, tls: true, alpn: 'h2' });
    expect(find('/v1/admin/curl--http1.1')).toMatchObject({ decision: 'deny', status: 403, tls: true, alpn: 'http/1.1' });
    expect(find('/v1/admin/curl--http2')).toMatchObject({ decision: 'deny', status: 403, tls: true, alpn: 'h2' });
  }, 90_000);

  it('python3 urllib (and requests when installed) with no CA argument', async () => {
    const audit = join(work, 'python.jsonl');
    const result = await run(['/usr/bin/python3', join(work, 'clients.py'), `https://${API}`], audit);
    expect(result.code, result.stderr).toBe(0);
    const out = fields(result.stdout);
    expect(out.get('urllib-allowed'), result.stdout).toMatch(/^200 /);
    expect(JSON.parse(out.get('urllib-allowed')!.slice(4))).toMatchObject({ path: '/v1/py-urllib', tls: true });
    expect(out.get('urllib-denied'), result.stdout).toMatch(/^403 /);
    expect(JSON.parse(out.get('urllib-denied')!.slice(4))).toMatchObject({ error: 'policy_denied' });
    const requests = out.get('requests') ?? '';
    if (requests.startsWith('skipped')) {
      console.warn(`run-inspect: python3 requests ${requests}`);
    } else {
      expect(requests, result.stdout).toMatch(/^200 /);
      expect(JSON.parse(requests.slice(4))).toMatchObject({ path: '/v1/py-requests', tls: true });
    }
    const http = auditEvents(audit).filter((e) => e.kind === 'http');
    expect(http.find((e) => e.path === '/v1/py-urllib')).toMatchObject({ decision: 'allow', tls: true, alpn: 'http/1.1', status: 200 });
    expect(http.find((e) => e.path === '/v1/admin/py')).toMatchObject({ decision: 'deny', tls: true, status: 403 });
  }, 90_000);

  it('node https.get and fetch trust the run CA through NODE_EXTRA_CA_CERTS', async () => {
    const audit = join(work, 'node.jsonl');
    // Node has no proxy variables of its own: the SNI path (port 443 redirected to the proxy) carries it.
    const result = await run(['/usr/bin/node', join(work, 'client.js'), API], audit);
    expect(result.code, result.stderr).toBe(0);
    const out = fields(result.stdout);
    expect(out.get('node-allowed'), result.stdout).toMatch(/^200 /);
    expect(JSON.parse(out.get('node-allowed')!.slice(4))).toMatchObject({ path: '/v1/node', tls: true });
    expect(out.get('node-denied'), result.stdout).toMatch(/^403 /);
    expect(out.get('fetch/v1/node-fetch'), result.stdout).toMatch(/^200 /);
    expect(JSON.parse(out.get('fetch/v1/node-fetch')!.slice(4))).toMatchObject({ path: '/v1/node-fetch', tls: true });
    expect(out.get('fetch/v1/admin/node-fetch'), result.stdout).toMatch(/^403 \{"error":"policy_denied"/);
    const http = auditEvents(audit).filter((e) => e.kind === 'http');
    expect(http.find((e) => e.path === '/v1/node')).toMatchObject({ decision: 'allow', tls: true, status: 200, binary: '/usr/bin/node' });
    expect(http.find((e) => e.path === '/v2/node')).toMatchObject({ decision: 'deny', tls: true, status: 403 });
  }, 90_000);
});

describe('portcullis run: git over inspected HTTPS', () => {
  it('clones from git http-backend (allowed by the rules) and is refused a push (a deny rule)', async () => {
    const audit = join(work, 'git.jsonl');
    const url = `https://${GIT}:${GIT_PORT}/repo.git`;
    const script = `set -u
cd "$HOME"
git -c http.sslVerify=true clone -q ${url} clone 2>&1; echo "clone=$?"
echo "readme=$(cat clone/README)"
cd clone
git -c user.name=agent -c user.email=agent@sandbox.invalid commit -q --allow-empty -m change
git -c http.sslVerify=true push -q origin HEAD:main 2>&1; echo "push=$?"`;
    const result = await run(['bash', '-c', script], audit);
    expect(result.code, result.stderr).toBe(0);
    const out = fields(result.stdout);
    expect(out.get('clone'), result.stdout).toBe('0');
    expect(out.get('readme')).toBe('inspected clone');
    expect(out.get('push'), result.stdout).not.toBe('0');

    const http = auditEvents(audit).filter((e) => e.kind === 'http');
    expect(http.find((e) => e.path === '/repo.git/git-upload-pack')).toMatchObject({ decision: 'allow', method: 'POST', tls: true, status: 200, alpn: expect.stringMatching(/^(h2|http\/1\.1)$/) });
    const push = http.find((e) => e.path === '/repo.git/git-receive-pack' && e.decision === 'deny');
    expect(push, JSON.stringify(http)).toMatchObject({ method: 'POST', status: 403, error: 'policy_denied', tls: true });
    // The repository upstream did not move.
    const log = spawnSync('git', ['--git-dir', join(work, 'repos', 'repo.git'), 'rev-list', '--count', 'main'], { encoding: 'utf8' });
    expect(log.stdout.trim()).toBe('1');
  }, 120_000);
});
