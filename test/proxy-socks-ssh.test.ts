// ssh and git over ssh through the proxy's SOCKS5, as people configure them: `nc -X 5 -x PROXY
// %h %p` (netcat-openbsd) as ProxyCommand, to a real sshd in the simulated internet's namespace
// (its own config, host key and authorized key; key-only). The policy lets only /usr/bin/ssh
// reach it: nc started by ssh has ssh as its parent and goes through; nc or Python on their own
// are refused.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../src/audit/sink.js';
import { startProxy, type RunningProxy } from '../src/proxy/server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { run, waitForEvent } from './fixtures/proxy/harness.js';

const SSH_PORT = 2222;
const PY_CACHE = join(import.meta.dirname, '../.cache/python');

let sim: SimulatedInternet;
let dir: string;
let sshd: ChildProcess | undefined;
let proxy: RunningProxy;
let sink: StreamAuditSink;
const events: AuditEvent[] = [];

function sshArgs(extra: string[] = []): string[] {
  return [
    '-F', '/dev/null',
    '-i', join(dir, 'user_key'),
    '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=10',
    '-o', `ProxyCommand=nc -X 5 -x 127.0.0.1:${proxy.address.port} %h %p`,
    ...extra,
  ];
}

async function startSshd(): Promise<void> {
  for (const key of ['host_key', 'user_key']) {
    const made = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'portcullis-test', '-f', join(dir, key)]);
    if (made.code !== 0) throw new Error(`ssh-keygen: ${made.stderr}`);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')), { mode: 0o600 });
  writeFileSync(join(dir, 'known_hosts'), `[git.sim.test]:${SSH_PORT} ${readFileSync(join(dir, 'host_key.pub'), 'utf8')}`);
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${SSH_PORT}`,
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      '',
    ].join('\n'),
  );
  // sshd refuses to start without its privilege separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = spawn('ip', ['netns', 'exec', sim.netns, '/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd = child;
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`sshd did not start: ${stderr}`)), 15_000);
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (/Server listening on/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited (${code}): ${stderr}`));
    });
  });
  child.stderr!.resume();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pc-socks-ssh-'));
  sim = await startSimulatedInternet({ hosts: { 'git.sim.test': {} } });
  await startSshd();
  const h = sim.hosts['git.sim.test']!;
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1
network_policies:
  ssh-only:
    endpoints:
      - { host: git.sim.test, port: ${SSH_PORT}, allowed_ips: ["${h.v4}/32", "${h.v6}/128"] }
    binaries:
      - path: /usr/bin/ssh
`,
  );
  sink = openAuditSink(undefined);
  sink.onEvent((e) => events.push(e));
  proxy = await startProxy({ policyFile, listen: { host: '127.0.0.1', port: 0 }, audit: sink, resolver: { host: sim.dns.address, port: sim.dns.port } });

  // A repository to clone over ssh (same file system, the server's namespace).
  const repo = join(dir, 'repo');
  for (const args of [['init', '-q', '-b', 'main', repo], ['-C', repo, 'commit', '-q', '--allow-empty', '-m', 'over socks']]) {
    const r = await run('git', args, { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' });
    if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  }
}, 60_000);

afterAll(async () => {
  sshd?.kill('SIGTERM');
  await proxy?.close();
  await sink?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ssh and git over SOCKS5 (nc -X 5 as ProxyCommand)', () => {
  it('ssh runs a command on the server; the caller is nc with ssh as its parent, allowed by the ssh policy', async () => {
    const res = await run('ssh', [...sshArgs(), '-p', String(SSH_PORT), 'root@git.sim.test', 'echo hello-over-socks; echo "$SSH_CONNECTION"']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain('hello-over-socks');
    // The server saw the proxy's connection (from the root namespace's end of the link).
    expect(res.stdout).toContain(`${sim.link.hostV4} `);
    const event = await waitForEvent(events, (e) => e.kind === 'socks' && e.host === 'git.sim.test' && e.decision === 'allow');
    expect(event).toMatchObject({ policy: 'ssh-only', port: SSH_PORT, binary: '/usr/bin/nc.openbsd', dialed: sim.hosts['git.sim.test']!.v4 });
    expect(event.ancestors).toContain('/usr/bin/ssh');
  });

  it('git clones over ssh through the proxy', async () => {
    const clone = join(dir, 'clone');
    const env = { ...process.env, GIT_SSH_COMMAND: ['ssh', ...sshArgs().map((a) => (a.includes(' ') ? `'${a}'` : a))].join(' ') };
    const res = await run('git', ['clone', '-q', `ssh://root@git.sim.test:${SSH_PORT}${join(dir, 'repo')}`, clone], env, 30_000);
    expect(res.code, res.stderr).toBe(0);
    const log = await run('git', ['-C', clone, 'log', '--format=%s']);
    expect(log.stdout.trim()).toBe('over socks');
  });

  it('nc on its own, or Python, is refused (0x02) with the reason in the audit; sshd never sees them', async () => {
    const nc = await run('nc', ['-X', '5', '-x', `127.0.0.1:${proxy.address.port}`, '-w', '5', 'git.sim.test', String(SSH_PORT)]);
    expect(nc.code).not.toBe(0);
    expect(nc.stdout).not.toContain('SSH-2.0');
    const ncEvent = await waitForEvent(events, (e) => e.kind === 'socks' && e.binary === '/usr/bin/nc.openbsd' && e.decision === 'deny');
    expect(ncEvent).toMatchObject({ error: 'policy_denied', host: 'git.sim.test', port: SSH_PORT });
    expect(ncEvent.reason).toMatch(/ssh-only|not allowed/);

    const script = `
import sys
sys.path.insert(0, ${JSON.stringify(PY_CACHE)})
import socks
s = socks.socksocket()
s.set_proxy(socks.SOCKS5, "127.0.0.1", ${proxy.address.port}, rdns=True)
s.settimeout(10)
try:
    s.connect(("git.sim.test", ${SSH_PORT}))
    print("connected", s.recv(64))
except socks.ProxyError as e:
    print("refused:", e)
`;
    const py = await run('python3', ['-c', script]);
    expect(py.stdout).toMatch(/^refused: .*(0x02|not allowed)/i);
    expect(py.stdout).not.toContain('SSH-2.0');
    expect(await waitForEvent(events, (e) => e.kind === 'socks' && typeof e.binary === 'string' && /python/.test(e.binary) && e.decision === 'deny')).toMatchObject({ error: 'policy_denied' });
  });
});
