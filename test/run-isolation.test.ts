// The boundary of `portcullis run` beyond the network: CMD's own PID and mount namespaces. No
// process of a run outlives it (fork loops included) and tear-down deletes nothing the sandbox
// controls; host sockets under /run, the host's /tmp and /dev/shm and host processes are out of
// reach; one run cannot signal another's processes; a numeric --user gets no group blindly; and
// identities still stop at the sandbox's edge. Work files live under /var/tmp: the sandbox has a
// /tmp of its own.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initScript } from '../src/sandbox/init-script.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';
const SANDBOX_USER = 'portcullis-sandbox';
const MARK = `pciso${process.pid}x${Date.now().toString(36)}`;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let sim: SimulatedInternet;
let work: string;
let policy: string;
let ca: string;

function startRun(cmd: string[], args: string[] = []): { child: ChildProcess; done: Promise<RunResult>; output: () => string } {
  const child = spawn(process.execPath, [CLI, 'run', '--quiet', '--policy', policy, '--resolver', `${sim.dns.address}:${sim.dns.port}`, ...args, '--', ...cmd], {
    cwd: work,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { child, done, output: () => stdout };
}

const run = (cmd: string[], args: string[] = []): Promise<RunResult> => startRun(cmd, args).done;

/** Host pids whose command line contains `marker` (this test's own processes only), of `user`. */
function pidsWith(marker: string, user?: string): number[] {
  const out = spawnSync('pgrep', [...(user ? ['-u', user] : []), '-f', marker], { encoding: 'utf8' }).stdout;
  return out.split('\n').filter((l) => l.trim() !== '').map(Number);
}

async function until(check: () => boolean, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

const killAll = (pids: number[]): void => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
};

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'api.iso.example': {} } });
  work = mkdtempSync('/var/tmp/portcullis-iso-test-');
  chmodSync(work, 0o755);
  ca = join(work, 'ca.pem');
  writeFileSync(ca, sim.ca.certPem, { mode: 0o644 });
  policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    `version: 1
network_policies:
  node-only:
    endpoints:
      - { host: api.iso.example, port: 443, allowed_ips: ${DOCS} }
    binaries:
      - path: ${process.execPath}
`,
  );
  // A process that keeps replacing itself with a new one (what a one-pass kill over a list of
  // pids cannot catch), until the epoch second $2, leaving a line in $3 per generation.
  writeFileSync(join(work, 'hop.sh'), 'echo . >> "$3"\n[ "$(date +%s)" -lt "$2" ] || exit 0\nsh "$0" "$1" "$2" "$3" &\n', { mode: 0o644 });
  mkdirSync(join(work, 'logs'), { mode: 0o1777 });
  chmodSync(join(work, 'logs'), 0o1777);
  writeFileSync(join(work, 'sleeper.sh'), 'echo started\ni=0\nwhile [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done\n', { mode: 0o644 });
  // Fills $HOME/d with files, one of them `canary`, then waits for a delete to start in there
  // and turns d into a symlink to $1 (a directory outside holding a file `canary`): a recursive
  // delete by root that goes on by path then deletes $1/canary.
  writeFileSync(
    join(work, 'swap.js'),
    `const fs = require('fs');
const [outside, n, seconds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const d = process.env.HOME + '/d';
// A delete goes in listing order: fill d until canary is listed in its second half.
let order = [];
for (let prefix = 0; prefix < 20 && order.indexOf('canary') < n / 2; prefix++) {
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d);
  for (let i = 0; i < n; i++) fs.writeFileSync(d + '/' + prefix + '-' + i, '');
  fs.writeFileSync(d + '/canary', 'decoy');
  order = fs.readdirSync(d);
}
const first = order.slice(0, 50).filter((name) => name !== 'canary').map((name) => d + '/' + name);
console.log('swapping');
fs.writeFileSync(process.env.HOME + '/ready', '');
const end = Date.now() + seconds * 1000;
watch: while (Date.now() < end) {
  for (const file of first) {
    if (!fs.existsSync(file)) { fs.renameSync(d, d + '.real'); fs.symlinkSync(outside, d); break watch; }
  }
}
while (Date.now() < end) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
`,
    { mode: 0o644 },
  );
  writeFileSync(
    join(work, 'connect-unix.js'),
    `require('net').connect(process.argv[2]).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(1); });\n`,
    { mode: 0o644 },
  );
});

afterAll(async () => {
  killAll(pidsWith(MARK));
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('portcullis run: no process outlives the run', () => {
  it('kills a fork loop and background processes before it ends, in one step', async () => {
    const marker = `${MARK}-hop`;
    const end = Math.floor(Date.now() / 1000) + 20;
    const log = join(work, 'logs', 'hops');
    const r = await run(['sh', '-c', `sh hop.sh ${marker} ${end} ${log} & sh sleeper.sh ${marker} & sleep 1; echo hopping; exit 0`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('hopping');
    // The loop's processes live a few milliseconds each: look several times, and at its log.
    const hops = readFileSync(log, 'utf8').length;
    expect(hops).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) {
      expect(pidsWith(marker)).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(readFileSync(log, 'utf8').length).toBe(hops);
  });

  it('deletes nothing outside the sandbox while a process swaps directories of its HOME for symlinks', async () => {
    const outside = join(work, 'outside');
    mkdirSync(outside, { mode: 0o755 });
    writeFileSync(join(outside, 'canary'), 'keep me', { mode: 0o644 });
    const r = await run(['sh', '-c', `node swap.js ${outside} 20000 20 ${MARK}-swap & i=0; while [ $i -lt 200 ] && ! [ -e "$HOME/ready" ]; do sleep 0.1; i=$((i+1)); done; sleep 0.2; echo "files=$(ls "$HOME/d" | wc -l)"`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('swapping');
    expect(Number(/files=(\d+)/.exec(r.stdout)?.[1])).toBe(20001);
    expect(existsSync(join(outside, 'canary'))).toBe(true);
    expect(pidsWith(`${MARK}-swap`)).toEqual([]);
  });
});

describe('portcullis run: private /run, /tmp, /dev/shm and pids', () => {
  let server: Server | undefined;
  let accepted = 0;
  const socketPath = `/run/${MARK}.sock`;
  afterAll(() => {
    server?.close();
    rmSync(socketPath, { force: true });
    rmSync(`/tmp/${MARK}-tmp`, { force: true });
    rmSync(`/dev/shm/${MARK}-shm`, { force: true });
  });

  it('cannot reach a unix socket listening under the host\'s /run', async () => {
    server = createServer((s) => {
      accepted++;
      s.end();
    });
    await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
    chmodSync(socketPath, 0o777); // any user could connect, were it reachable
    const r = await run(['sh', '-c', `node connect-unix.js ${socketPath}; node connect-unix.js /var${socketPath}; ls /run`]);
    expect(r.stdout).not.toContain('connected');
    expect(r.stdout.match(/ENOENT/g)?.length).toBe(2);
    expect(accepted).toBe(0);
  });

  it('writes /tmp and /dev/shm files into its own, not the host\'s', async () => {
    const r = await run(['sh', '-c', `echo x > /tmp/${MARK}-tmp && echo x > /dev/shm/${MARK}-shm && cat /tmp/${MARK}-tmp /dev/shm/${MARK}-shm`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('x\nx\n');
    expect(existsSync(`/tmp/${MARK}-tmp`)).toBe(false);
    expect(existsSync(`/dev/shm/${MARK}-shm`)).toBe(false);
  });

  it('neither sees nor signals a host process', async () => {
    const host = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = host.pid!;
      const r = await run(['sh', '-c', `ps -p ${pid} >/dev/null; echo "ps=$?"; [ -e /proc/${pid} ]; echo "proc=$?"; kill -0 ${pid}; echo "kill=$?"; echo "procs=$(ls /proc | grep -c '^[0-9]')"`]);
      expect(r.stdout).toMatch(/^ps=1$/m);
      expect(r.stdout).toMatch(/^proc=1$/m);
      expect(r.stdout).toMatch(/^kill=1$/m);
      expect(Number(/procs=(\d+)/.exec(r.stdout)?.[1])).toBeLessThan(10);
      expect(host.exitCode).toBeNull();
    } finally {
      host.kill('SIGKILL');
    }
  });
});

describe('the sandbox init', () => {
  const inMountNamespace = (script: string, ...cmd: string[]) =>
    spawnSync('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'init', ...cmd], { encoding: 'utf8', timeout: 10_000 });

  it('mounts over what a target links to, once; binds over a target that links into the private /run (as /etc/resolv.conf may); touches nothing of the host', () => {
    const dir = mkdtempSync('/var/tmp/portcullis-iso-bind-');
    const linkTarget = `/run/${MARK}-resolve/stub-resolv.conf`;
    try {
      writeFileSync(join(dir, 'resolv.conf.sandbox'), 'nameserver 192.0.2.53\n');
      spawnSync('ln', ['-s', linkTarget, join(dir, 'resolv.conf')]);
      mkdirSync(join(dir, 'real-tmp'));
      spawnSync('ln', ['-s', join(dir, 'real-tmp'), join(dir, 'tmp')]);
      const mounts = {
        tmpfs: [{ target: '/run', mode: '755' }, { target: join(dir, 'tmp'), mode: '1777' }, { target: join(dir, 'real-tmp'), mode: '1777' }],
        binds: [{ source: join(dir, 'resolv.conf.sandbox'), target: join(dir, 'resolv.conf') }],
        home: { path: join(dir, 'tmp', 'home'), uid: 65534, gid: 65534 },
      };
      const r = inMountNamespace(initScript(mounts), 'sh', '-c', `cat ${join(dir, 'resolv.conf')}; stat -c %U ${join(dir, 'tmp', 'home')}; grep -c ' ${join(dir, 'real-tmp')} ' /proc/self/mountinfo`);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('nameserver 192.0.2.53\nnobody\n1\n');
      expect(existsSync(linkTarget)).toBe(false);
      expect(existsSync(join(dir, 'real-tmp', 'home'))).toBe(false);
      // A bind target that does not exist outside the private tmpfs, and a HOME outside them: refused.
      const missing = { ...mounts, binds: [{ source: join(dir, 'resolv.conf.sandbox'), target: join(dir, 'absent', 'resolv.conf') }] };
      const refused = inMountNamespace(initScript(missing), 'echo', 'ran');
      expect(refused.status).not.toBe(0);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/cannot bind .* does not exist/);
      const homeOutside = inMountNamespace(initScript({ ...mounts, home: { path: join(dir, 'home'), uid: 65534, gid: 65534 } }), 'echo', 'ran');
      expect(homeOutside.stdout).toBe('');
      expect(homeOutside.stderr).toMatch(/would not be in a private tmpfs/);
      expect(existsSync(join(dir, 'home'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('portcullis run: concurrent runs', () => {
  it('a second run cannot signal the first run\'s process by its host pid', async () => {
    const marker = `${MARK}-first`;
    const first = startRun(['sh', 'sleeper.sh', marker]);
    try {
      expect(await until(() => first.output().includes('started') && pidsWith(marker, SANDBOX_USER).length === 1)).toBe(true);
      const [pid] = pidsWith(marker, SANDBOX_USER);
      const second = await run(['sh', '-c', `kill -0 ${pid}; echo "probe=$?"; kill -KILL ${pid}; echo "kill=$?"`]);
      expect(second.stdout).toMatch(/^probe=1$/m);
      expect(second.stdout).toMatch(/^kill=1$/m);
      expect(pidsWith(marker, SANDBOX_USER)).toEqual([pid]);
    } finally {
      first.child.kill('SIGTERM');
      expect((await first.done).code).toBe(143);
    }
    expect(pidsWith(marker)).toEqual([]);
  });
});

describe('portcullis run: --user', () => {
  it('gives a numeric uid without a passwd entry the nogroup group, not gid = uid', async () => {
    let uid = 45678;
    while (spawnSync('getent', ['passwd', String(uid)]).status === 0) uid++;
    const nogroup = spawnSync('getent', ['group', 'nogroup'], { encoding: 'utf8' }).stdout.split(':')[2];
    expect(nogroup).toBeDefined();
    const r = await run(['sh', '-c', 'id -u; id -g; id -G'], ['--user', String(uid)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${uid}\n${nogroup}\n${nogroup}\n`);
  });
});

describe('portcullis run: identity inside the PID namespace', () => {
  it('an orphaned process is not credited with the sandbox\'s machinery as ancestors', async () => {
    const audit = join(work, 'orphan.jsonl');
    // The inner subshell outlives the outer one: curl's parent is an orphan, adopted by the
    // namespace's init. The policy allows only the runtime portcullis itself runs on.
    const curl = `curl -sS --max-time 10 --cacert ${ca} https://api.iso.example/orphan`;
    const out = '"$HOME/orphan.out"';
    const r = await run(['sh', '-c', `( (${curl} > ${out} 2>&1; echo "curl=$?" >> ${out}) & ); i=0; while [ $i -lt 150 ] && ! grep -q curl= ${out} 2>/dev/null; do sleep 0.1; i=$((i+1)); done; cat ${out}`], ['--audit', audit]);
    expect(r.stdout).toMatch(/curl=\d+/);
    const events = readFileSync(audit, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    const decided = events.filter((e) => e.host === 'api.iso.example' && e.decision !== undefined);
    expect(decided.length).toBeGreaterThan(0);
    for (const e of decided) {
      expect(e.decision).toBe('deny');
      expect(JSON.stringify(e.ancestors ?? [])).not.toMatch(/unshare|\/node"/);
    }
  });
});
