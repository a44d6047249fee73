// portcullis run: set-up plus tear-down time of `run -- true` against `unshare -n true`, and an
// HTTPS download of 100 MB from the simulated internet inside `run` against the same download
// outside any sandbox. Only the simulated internet (a namespace this benchmark creates) and
// loopback are contacted.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulatedInternet } from '../dist/sim/internet.js';
import { runSandbox } from '../dist/sandbox/sandbox.js';
import { startSandboxEgress } from '../dist/sandbox/egress.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const STARTS = Number(process.env.BENCH_RUN_STARTS ?? 15);
const DOWNLOADS = Number(process.env.BENCH_RUN_DOWNLOADS ?? 3);
const BYTES = 100_000_000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

// Asynchronous on purpose: this process serves the simulated internet's DNS, which a
// blocking spawnSync would starve.
function timed(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ ms, stdout });
    });
  });
}

const work = mkdtempSync('/var/tmp/portcullis-bench-run-'); // not /tmp: CMD has its own
chmodSync(work, 0o755);
const sim = await startSimulatedInternet({ hosts: { 'files.bench.example': {} } });
try {
  const host = sim.hosts['files.bench.example'];
  const policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'network_policies:',
      '  downloads:',
      '    endpoints:',
      '      - host: files.bench.example',
      '        port: 443',
      '        allowed_ips: ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]',
      '    binaries:',
      '      - path: /usr/bin/curl',
      '',
    ].join('\n'),
  );
  const ca = join(work, 'ca.pem');
  writeFileSync(ca, sim.ca.certPem, { mode: 0o644 });
  const resolver = `${sim.dns.address}:${sim.dns.port}`;

  // 1. Start-up and tear-down.
  const runArgs = [CLI, 'run', '--policy', policy, '--resolver', resolver, '--quiet', '--', 'true'];
  await timed(process.execPath, runArgs); // warm the page cache, create the sandbox user and V8's code cache for `run`
  const runTimes = [];
  const unshareTimes = [];
  const nodeTimes = [];
  for (let i = 0; i < STARTS; i++) {
    runTimes.push((await timed(process.execPath, runArgs)).ms);
    unshareTimes.push((await timed('unshare', ['-n', 'true'])).ms);
    nodeTimes.push((await timed(process.execPath, ['-e', '0'])).ms);
  }
  // The same, in-process: what the sandbox itself costs, without Node starting and loading modules.
  const inProcess = [];
  for (let i = 0; i < STARTS; i++) {
    const t0 = performance.now();
    const code = await runSandbox({ policyFile: policy, command: ['true'], quiet: true, resolver: { host: sim.dns.address, port: sim.dns.port }, startEgress: startSandboxEgress });
    if (code !== 0) throw new Error(`in-process run exited ${code}`);
    inProcess.push(performance.now() - t0);
  }
  const runMs = median(runTimes);
  console.log(`run -- true          median ${runMs.toFixed(0)} ms (n=${STARTS}; target <= 300 ms)`);
  console.log(`unshare -n true      median ${median(unshareTimes).toFixed(1)} ms   ratio run/unshare ${(runMs / median(unshareTimes)).toFixed(0)}x`);
  console.log(`node -e 0            median ${median(nodeTimes).toFixed(0)} ms (the part of run that is Node starting)`);
  console.log(`runSandbox in-process median ${median(inProcess).toFixed(0)} ms (namespace, veth, proxy, DNS proxy, nft, CMD, flows, tear-down; the rest of run is loading modules)`);

  // 2. 100 MB over HTTPS: curl's own transfer time, inside run and outside.
  const url = `https://files.bench.example/bytes/${BYTES}`;
  const curlArgs = ['-sS', '--fail', '--cacert', ca, '-o', '/dev/null', '-w', '%{time_total} %{size_download}\n', url];
  const outside = [];
  const inside = [];
  const proxyOnly = [];
  for (let i = 0; i < DOWNLOADS; i++) {
    const o = (await timed('curl', ['--resolve', `files.bench.example:443:${host.v4}`, ...curlArgs])).stdout.trim().split(' ');
    if (Number(o[1]) !== BYTES) throw new Error(`outside download got ${o[1]} bytes`);
    outside.push(Number(o[0]));
    const r = await timed(process.execPath, [CLI, 'run', '--policy', policy, '--resolver', resolver, '--quiet', '--', 'curl', ...curlArgs], { cwd: work });
    const line = r.stdout.trim().split('\n').pop().split(' ');
    if (Number(line[1]) !== BYTES) throw new Error(`inside download got ${line[1]} bytes`);
    inside.push(Number(line[0]));
    // The same proxy without namespace or fence (--no-fence): what the proxy itself costs.
    const p = await timed(process.execPath, [CLI, 'run', '--no-fence', '--policy', policy, '--resolver', resolver, '--quiet', '--', 'curl', ...curlArgs], { cwd: work });
    const pl = p.stdout.trim().split('\n').pop().split(' ');
    if (Number(pl[1]) !== BYTES) throw new Error(`proxy-only download got ${pl[1]} bytes`);
    proxyOnly.push(Number(pl[0]));
  }
  const mbps = (s) => (BYTES / s / 1e6).toFixed(0);
  const o = median(outside);
  const n = median(inside);
  console.log(`100 MB HTTPS outside median ${o.toFixed(3)} s (${mbps(o)} MB/s)`);
  console.log(`100 MB HTTPS in run  median ${n.toFixed(3)} s (${mbps(n)} MB/s, through the proxy)`);
  const p = median(proxyOnly);
  console.log(`100 MB HTTPS proxy only (run --no-fence) median ${p.toFixed(3)} s (${mbps(p)} MB/s)`);
  console.log(`throughput ratio run/outside ${(o / n).toFixed(2)} (target >= 0.8); run/proxy-only ${(p / n).toFixed(2)} (what the namespace and fence add)`);
} finally {
  await sim.close();
  rmSync(work, { recursive: true, force: true });
}
