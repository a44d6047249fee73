// `portcullis run` end to end: curl, python3 and node clients in the sandbox against the
// simulated internet; allow, each kind of deny, report-only, the unprivileged user, signals,
// exit codes, parallel runs and clean-up of a killed run's leftovers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { listNamespaces } from '../src/netns/namespaces.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

let sim: SimulatedInternet;
let work: string;
let policy: string;
let ca: string;
const NODE_CONNECT = `
// HTTPS through the proxy with CONNECT (Node has no HTTP_PROXY support of its own).
const http = require('http'); const tls = require('tls'); const fs = require('fs');
const proxy = new URL(process.env.HTTPS_PROXY);
const [host, path] = [process.argv[2], process.argv[3] || '/'];
const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: host + ':443' });
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.log('CONNECT ' + res.statusCode); process.exit(3); }
  const s = tls.connect({ socket, servername: host, ca: fs.readFileSync(process.env.CA) }, () => {
    s.write('GET ' + path + ' HTTP/1.1\\r\\nHost: ' + host + '\\r\\nConnection: close\\r\\n\\r\\n');
  });
  let body = ''; s.on('data', (d) => (body += d)); s.on('end', () => { console.log(body.split('\\r\\n\\r\\n')[1]); });
});
req.on('error', (e) => { console.log('error ' + e.code); process.exit(4); });
req.end();
`;
const NODE_DIRECT = `
const net = require('net');
const s = net.connect({ host: process.argv[2], port: Number(process.argv[3]), timeout: 5000 });
s.on('connect', () => { console.log('connected'); process.exit(0); });
s.on('timeout', () => { console.log('timeout'); process.exit(5); });
s.on('error', (e) => { console.log(e.code); process.exit(6); });
`;
const NODE_DNS = `
require('dns').resolve4(process.argv[2], (err, a) => { console.log(err ? err.code : 'resolved ' + a); process.exit(err ? 7 : 0); });
`;
const PY_FETCH = `
import os, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["CA"])
try:
    print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).read().decode())
except Exception as e:
    print("error", e); sys.exit(9)
`;

function startRun(args: string[], cmd: string[], input?: string): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(process.execPath, [CLI, 'run', '--policy', policy, '--resolver', `${sim.dns.address}:${sim.dns.port}`, ...args, '--', ...cmd], {
    cwd: work,
    env: { ...process.env, CA: ca },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) child.stdin!.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr, pid: child.pid! })));
  return { child, done };
}

const run = (cmd: string[], args: string[] = []): Promise<RunResult> => startRun(args, cmd).done;

function auditEvents(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Nothing of run `pid` is left: namespace, /etc/netns directory, veth, processes inside. */
async function expectNothingLeft(pid: number): Promise<void> {
  const prefix = `pcrun-${pid}-`;
  expect((await listNamespaces()).filter((n) => n.startsWith(prefix))).toEqual([]);
  expect(existsSync('/etc/netns') ? spawnSync('ls', ['/etc/netns']).stdout.toString() : '').not.toContain(prefix);
  expect(spawnSync('ip', ['-o', 'link', 'show']).stdout.toString()).not.toContain(`pcr${pid.toString(36)}`);
  const stray = spawnSync('pgrep', ['-u', 'portcullis-sandbox', '-a']).stdout.toString();
  expect(stray).not.toContain(work);
}

beforeAll(async () => {
  sim = await startSimulatedInternet({
    hosts: { 'api.runtest.example': {}, 'code.runtest.example': {}, 'tickets.runtest.example': {}, 'paste.runtest.example': {} },
  });
  // Not under /tmp: CMD has a /tmp of its own.
  work = mkdtempSync('/var/tmp/portcullis-run-test-');
  chmodSync(work, 0o755);
  ca = join(work, 'ca.pem');
  writeFileSync(ca, sim.ca.certPem, { mode: 0o644 });
  policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    `version: 1
network_policies:
  api:
    endpoints:
      - { host: api.runtest.example, port: 443, allowed_ips: ${DOCS} }
    binaries:
      - path: /usr/bin/curl
      - path: /usr/bin/python3*
      - path: ${process.execPath}
  code:
    endpoints:
      - { host: code.runtest.example, port: 443, allowed_ips: ${DOCS} }
    binaries:
      - path: /usr/bin/git
  tickets:
    endpoints:
      - host: tickets.runtest.example
        port: 80
        protocol: rest
        allowed_ips: ${DOCS}
        rules:
          - allow: { method: GET, path: "/v1/**" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
`,
  );
  for (const [name, text] of [
    ['connect.js', NODE_CONNECT],
    ['direct.js', NODE_DIRECT],
    ['dns.js', NODE_DNS],
    ['fetch.py', PY_FETCH],
  ] as const) {
    writeFileSync(join(work, name), text, { mode: 0o644 });
  }
});

afterAll(async () => {
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const curl = (url: string, ...extra: string[]): string[] => ['curl', '-sS', '--max-time', '10', '--cacert', ca, ...extra, url];

describe('portcullis run: allow', () => {
  it('lets curl, python3 and node reach the allowed API through the proxy', async () => {
    const audit = join(work, 'allow.jsonl');
    const r = await run(['sh', '-c', `${curl('https://api.runtest.example/v1/x').join(' ')} && echo && python3 fetch.py https://api.runtest.example/py && node connect.js api.runtest.example /node`], ['--audit', audit]);
    expect(r.stderr).toContain('portcullis summary');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"path":"/v1/x"');
    expect(r.stdout).toContain('"path":"/py"');
    expect(r.stdout).toContain('"path":"/node"');
    const allowed = auditEvents(audit).filter((e) => e.decision === 'allow' && e.host === 'api.runtest.example');
    const binaries = new Set(allowed.map((e) => String(e.binary)));
    expect([...binaries].some((b) => b.endsWith('/curl'))).toBe(true);
    expect([...binaries].some((b) => /python3/.test(b))).toBe(true);
    expect([...binaries].some((b) => b.endsWith('/node'))).toBe(true);
    expect(r.stderr).toMatch(/✔ allowed\s+\d+\s+api\.runtest\.example:443/);
    await expectNothingLeft(r.pid);
  });
});

describe('portcullis run: deny', () => {
  it('refuses a host no policy names, a program a policy does not list, and an L7 deny rule', async () => {
    const audit = join(work, 'deny.jsonl');
    const script = [
      `${curl('https://paste.runtest.example/upload').join(' ')}; echo "paste=$?"`,
      'python3 fetch.py https://code.runtest.example/repo; echo "code=$?"',
      'curl -sS --max-time 10 http://tickets.runtest.example/v1/tickets/1; echo; echo "get=$?"',
      'curl -sS --max-time 10 -D - -X POST http://tickets.runtest.example/v1/admin/reset; echo; echo "admin=$?"',
    ].join('\n');
    const r = await run(['sh', '-c', script], ['--audit', audit]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/paste=56/); // curl: CONNECT refused with 403
    expect(r.stdout).toMatch(/error .*403/);
    expect(r.stdout).toMatch(/code=9/);
    expect(r.stdout).toContain('"path":"/v1/tickets/1"');
    expect(r.stdout).toMatch(/HTTP\/1\.1 403/);
    expect(r.stdout).toMatch(/x-portcullis-decision: deny/i);
    const events = auditEvents(audit);
    const denied = (host: string) => events.filter((e) => e.decision === 'deny' && e.host === host);
    expect(denied('paste.runtest.example').length).toBeGreaterThan(0);
    expect(String(denied('code.runtest.example')[0]?.binary)).toMatch(/python3/);
    expect(denied('tickets.runtest.example').some((e) => e.path === '/v1/admin/reset' || String(e.reason).includes('admin'))).toBe(true);
    expect(r.stderr).toMatch(/✘ denied .*paste\.runtest\.example:443/);
  });

  it('rejects a direct connection around the proxy at once (nft) and refuses DNS for unlisted names', async () => {
    const audit = join(work, 'direct.jsonl');
    const ip = sim.hosts['paste.runtest.example']!.v4!;
    const r = await run(['sh', '-c', `node direct.js ${ip} 80; echo "direct=$?"; node dns.js c2VjcmV0.exfil.runtest.example; echo "dns=$?"; node dns.js api.runtest.example; echo "dnsok=$?"`], ['--audit', audit]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ECONNREFUSED');
    expect(r.stdout).toContain('direct=6');
    expect(r.stdout).toContain('EREFUSED');
    expect(r.stdout).toContain('dns=7');
    expect(r.stdout).toContain(`resolved ${sim.hosts['api.runtest.example']!.v4}`);
    const events = auditEvents(audit);
    expect(events.some((e) => e.kind === 'flow' && e.decision === 'deny' && Number(e.packets) > 0)).toBe(true);
    expect(events.some((e) => e.kind === 'dns' && e.decision === 'deny' && e.host === 'c2vjcmv0.exfil.runtest.example')).toBe(true);
    expect(r.stderr).toMatch(/DNS refused\s+\d+\s+c2vjcmv0\.exfil\.runtest\.example/);
    expect(r.stderr).toMatch(/packets? rejected/);
  });

  it('--report-only lets the denied request through and records it as audit', async () => {
    // curl may not reach code.runtest.example (only git may); the SSRF check stays on, and the
    // endpoint's allowed_ips covers the simulated address.
    const audit = join(work, 'report.jsonl');
    const r = await run(curl('https://code.runtest.example/repo'), ['--report-only', '--audit', audit]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"host":"code.runtest.example"');
    expect(auditEvents(audit).some((e) => e.decision === 'audit' && e.host === 'code.runtest.example')).toBe(true);
    expect(r.stderr).toMatch(/! audited\s+1\s+code\.runtest\.example:443/);
  });
});

describe('portcullis run: the unprivileged user', () => {
  it('runs CMD without root and without capabilities: it cannot flush the rules or change addresses', async () => {
    const ip = sim.hosts['paste.runtest.example']!.v4!;
    const script = 'id -u; grep CapEff /proc/self/status; nft flush ruleset; echo "flush=$?"; ip addr add 10.9.9.9/32 dev lo; echo "addr=$?"; ip link set lo down; echo "link=$?"; node direct.js ' + ip + ' 80';
    const r = await run(['sh', '-c', script]);
    const uid = Number(r.stdout.split('\n')[0]);
    expect(uid).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/CapEff:\s+0+\n/);
    expect(r.stdout).toMatch(/flush=[1-9]/);
    expect(r.stdout).toMatch(/addr=[1-9]/);
    expect(r.stdout).toMatch(/link=[1-9]/);
    expect(r.stdout).toContain('ECONNREFUSED'); // the fence still stands
  });

  it('refuses --user root', async () => {
    const r = await run(['true'], ['--user', 'root']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must not be root/);
  });
});

describe('portcullis run: exit codes and signals', () => {
  it('passes stdin, stdout and stderr through', async () => {
    const r = await startRun(['--quiet'], ['sh', '-c', 'tr a-z A-Z; echo to-stderr >&2'], 'hello sandbox\n').done;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('HELLO SANDBOX\n');
    expect(r.stderr).toBe('to-stderr\n');
  });

  it('passes CMD\'s exit code back, and 128+n when it dies of a signal', async () => {
    expect((await run(['sh', '-c', 'exit 7'])).code).toBe(7);
    const crashed = await run(['sh', '-c', 'kill -SEGV $$']);
    expect(crashed.code).toBe(139);
    await expectNothingLeft(crashed.pid);
    expect((await run(['/nonexistent/program'])).code).toBe(127);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`cleans up everything on ${signal} mid-transfer`, async () => {
      const { child, done } = startRun([], curl('https://api.runtest.example/bytes/500000000', '--limit-rate', '2M', '-o', '/dev/null'));
      // Wait until the transfer is under way (the proxy has logged the allow).
      const deadline = Date.now() + 20_000;
      let seen = '';
      child.stderr!.on('data', (d: Buffer) => (seen += d.toString()));
      while (Date.now() < deadline && spawnSync('pgrep', ['-u', 'portcullis-sandbox', '-f', 'bytes/500000000']).status !== 0) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      child.kill(signal);
      const r = await done;
      expect(r.code).toBe(signal === 'SIGTERM' ? 143 : 130);
      expect(r.stderr).toContain('portcullis summary');
      await expectNothingLeft(r.pid);
      expect(spawnSync('pgrep', ['-u', 'portcullis-sandbox', '-f', 'bytes/500000000']).status).not.toBe(0);
    });
  }
});

describe('portcullis run: without the fence', () => {
  it('says once that it is weaker, still decides proxied requests, and cannot stop a direct connection', async () => {
    const ip = sim.hosts['paste.runtest.example']!.v4!;
    const script = `${curl('https://api.runtest.example/weak').join(' ')}; echo; ${curl('https://paste.runtest.example/x').join(' ')}; echo "paste=$?"; node direct.js ${ip} 80`;
    const r = await run(['sh', '-c', script], ['--no-fence']);
    expect(r.stderr.match(/WEAKER/g)?.length).toBe(1);
    expect(r.stdout).toContain('"path":"/weak"');
    expect(r.stdout).toContain('paste=56');
    expect(r.stdout).toContain('connected');
    expect(r.stderr).toContain('no network fence');
  });
});

describe('portcullis run: started without privileges', () => {
  it('says once that there is no fence and runs CMD with the proxy environment only', async () => {
    const home = join(work, 'nobody-home');
    spawnSync('mkdir', ['-p', home]);
    spawnSync('chown', ['65534:65534', home]);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'run', '--policy', policy, '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--', 'sh', '-c', 'echo "proxy=$HTTPS_PROXY"; exit 4'], {
      cwd: work,
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache') },
    });
    expect(r.status).toBe(4);
    expect(r.stderr.match(/WEAKER/g)?.length).toBe(1);
    expect(r.stderr).toMatch(/not root \(missing CAP_NET_ADMIN/);
    expect(r.stdout).toMatch(/^proxy=http:\/\/127\.0\.0\.1:\d+$/m);
  });
});

describe('portcullis run: several at once and leftovers', () => {
  it('runs two sandboxes at the same time without a clash', async () => {
    const [a, b] = await Promise.all([run(curl('https://api.runtest.example/a')), run(curl('https://api.runtest.example/b'))]);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(a.stdout).toContain('"path":"/a"');
    expect(b.stdout).toContain('"path":"/b"');
  });

  it('after a run is killed outright (SIGKILL), the next run removes its namespace, files and processes', async () => {
    const { child } = startRun(['--quiet'], ['sh', '-c', 'echo started; exec sleep 600']);
    // 'exit', not 'close': the orphaned sleep keeps the output pipes open.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 20_000;
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('started') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const pid = child.pid!;
    // This run's sleep (not another run's: runs of other test files may sleep at the same time).
    const ns = (await listNamespaces()).find((n) => n.startsWith(`pcrun-${pid}-`))!;
    const sleeper = spawnSync('ip', ['netns', 'pids', ns]).stdout.toString().trim().split('\n').map(Number)
      .filter((p) => p > 0 && existsSync(`/proc/${p}/comm`) && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sleep');
    expect(sleeper.length).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await exited;
    // Nothing of the killed run could clean up after SIGKILL. (A run another test file starts at
    // the same time may already have removed these leftovers: what follows holds either way.)
    const left = (await listNamespaces()).filter((n) => n.startsWith(`pcrun-${pid}-`));
    expect(left.length).toBeLessThanOrEqual(1);
    expect(left.length === 0 || existsSync(`/etc/netns/${left[0]}`)).toBe(true);
    const r = await run(['true']);
    expect(r.code).toBe(0);
    await expectNothingLeft(pid);
    // Killed: gone, or a zombie waiting for whoever inherited it to reap it.
    for (const p of sleeper) {
      const stat = existsSync(`/proc/${p}/stat`) ? readFileSync(`/proc/${p}/stat`, 'utf8') : '';
      expect(stat === '' || / Z /.test(stat.slice(stat.lastIndexOf(')')))).toBe(true);
    }
  });

  it('removes the leftovers of a killed earlier run', async () => {
    const dead = spawnSync('true').pid!;
    const stale = `pcrun-${dead}-0`;
    spawnSync('ip', ['netns', 'add', stale]);
    spawnSync('mkdir', ['-p', `/etc/netns/${stale}`]);
    // An earlier version's HOME in the host's /tmp, owned by the sandbox user, with a symlink
    // out of it: removed as its owner, and nothing the link leads to.
    const outside = join(work, 'outside-of-home');
    spawnSync('mkdir', ['-p', join(outside, 'inner')]);
    writeFileSync(join(outside, 'inner', 'canary'), 'keep');
    const home = join('/tmp', `portcullis-home-${dead}-0`);
    spawnSync('mkdir', ['-p', join(home, 'd')]);
    writeFileSync(join(home, 'd', 'file'), 'x');
    symlinkSync(outside, join(home, 'link'));
    symlinkSync(join(outside, 'inner'), join(home, 'd', 'link'));
    spawnSync('chown', ['-R', '-h', 'portcullis-sandbox:', home]);
    const rootOwned = join('/tmp', `portcullis-home-${dead}-1`);
    spawnSync('mkdir', ['-p', rootOwned]);
    expect(await listNamespaces()).toContain(stale);
    try {
      const r = await run(['true']);
      expect(r.code).toBe(0);
      expect(await listNamespaces()).not.toContain(stale);
      expect(existsSync(`/etc/netns/${stale}`)).toBe(false);
      expect(existsSync(home)).toBe(false);
      expect(readFileSync(join(outside, 'inner', 'canary'), 'utf8')).toBe('keep');
      expect(existsSync(rootOwned)).toBe(true); // not a sandbox user's: left alone
    } finally {
      rmSync(home, { recursive: true, force: true });
      rmSync(rootOwned, { recursive: true, force: true });
    }
  });
});
