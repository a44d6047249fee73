// Identity resolution latency (socket row → owner → executable, ancestors, hashes) with 10, 200
// and 1,000 idle processes and 100 and 10,000 established sockets present, against one run of
// `ss -tnp` (iproute2) answering the same question in the same run.
//
//   cold run      the same with the on-disk hash store an earlier run left (a new proxy
//                 process on a machine where portcullis ran before): nothing in memory; and
//                 the same after warm() (what the proxy does once it listens)
//   cold          a fresh IdentityResolver per lookup: empty process table, empty hash cache,
//                 its sock_diag helper started on the way
//   warm procfs   one resolver reading /proc/net/tcp{,6}; the same long-lived client opens a
//                 new connection each time
//   warm diag     the same with the default socket source (sock_diag exact lookup)
//   warm-new      default source; a new curl process per connection (as a proxy sees most clients)
//   procfs miss   a 4-tuple that is in no table: /proc/net/tcp and tcp6 read to the end, the
//                 worst case of the procfs source (a hit stops at its row, whose place in the
//                 kernel's hash walk depends on the 4-tuple, so hit timings vary run to run)
//   ss -tnp       `ss -tnpH state established src C dst S`, process spawn included
//   native vs JS  the proxy's resolver (no argv) with procfs read through the native addon and
//                 from JavaScript (nativeProcfs: false, the path without a compiler), each socket
//                 resolved by both in alternating order: wall time p50/p99 and CPU per resolution
//                 (process.cpuUsage around each, the kernel's accounting that /proc/self/stat
//                 rounds to ticks), for the long-lived client (warm) and a new curl per
//                 connection (warm-new). IDENTITY_BENCH_BASELINE=<a dist/ directory> adds a third
//                 resolver from another build (e.g. the commit before), alternating likewise.
//   busy client   the same resolvers, alternating, for a client like the proxy bench's: one node
//                 process keeping 50 connections open (IDENTITY_BENCH_BUSY lookups, 0: none)
//
// Loopback only; every process started here is killed at the end.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { IdentityResolver } from '../dist/identity/resolver.js';

const Baseline = process.env.IDENTITY_BENCH_BASELINE
  ? (await import(join(process.env.IDENTITY_BENCH_BASELINE, 'identity/resolver.js'))).IdentityResolver
  : null;

const counts = (env, fallback) => (process.env[env] ?? fallback).split(',').map(Number);
const PROCESS_COUNTS = counts('IDENTITY_BENCH_PROCESSES', '10,200,1000');
const SOCKET_COUNTS = counts('IDENTITY_BENCH_SOCKETS', '100,10000');
const COLD = Number(process.env.IDENTITY_BENCH_COLD ?? 8);
const WARM = Number(process.env.IDENTITY_BENCH_WARM ?? 200);
const WARM_NEW = Number(process.env.IDENTITY_BENCH_WARM_NEW ?? 40);
const SS_RUNS = Number(process.env.IDENTITY_BENCH_SS ?? 8);
const BUSY = Number(process.env.IDENTITY_BENCH_BUSY ?? 1000);
const DEADLINE = Date.now() + Number(process.env.IDENTITY_BENCH_SECONDS ?? 170) * 1000;
const storeDir = mkdtempSync(join(tmpdir(), 'pc-identity-bench-'));

const started = [];
function track(child) {
  child.on('error', () => {});
  started.push(child);
  return child;
}
function killAll() {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {}
    }
  }
}
process.on('exit', killAll);
process.on('SIGINT', () => process.exit(130));

const now = () => process.hrtime.bigint();
const ms = (t0) => Number(now() - t0) / 1e6;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const f = (x) => (x === undefined || Number.isNaN(x) ? 'n/a' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const tableRows = () => ['tcp', 'tcp6'].reduce((n, t) => n + readFileSync(`/proc/self/net/${t}`, 'latin1').split('\n').length - 2, 0);
const processCount = () => readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;

function lineReader(child) {
  const lines = [];
  const waiters = [];
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop();
    for (const l of parts) (waiters.shift() ?? ((x) => lines.push(x)))(l);
  });
  return () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiters.push(r)));
}

// --- listener ---------------------------------------------------------------------------------
const server = net.createServer();
const accepted = [];
const acceptWaiters = [];
server.on('connection', (s) => {
  s.on('error', () => {});
  (acceptWaiters.shift() ?? ((x) => accepted.push(x)))(s);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const PORT = server.address().port;
const nextAccepted = () => (accepted.length ? Promise.resolve(accepted.shift()) : new Promise((r) => acceptWaiters.push(r)));
const tupleOf = (s) => ({ clientAddress: s.remoteAddress, clientPort: s.remotePort, proxyAddress: s.localAddress, proxyPort: s.localPort });

// --- load: idle processes and established sockets --------------------------------------------
const sleepers = [];
function growSleepers(target) {
  while (sleepers.length < target) sleepers.push(track(spawn('sleep', ['600'], { stdio: 'ignore' })));
}

const HOLDER = `
const net = require('net');
const pairs = Number(process.argv[1]);
const keep = [];
const srv = net.createServer((s) => keep.push(s)).listen(0, '127.0.0.1', async () => {
  for (let i = 0; i < pairs; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, pairs - i) }, () => new Promise((r) => {
      const c = net.connect(srv.address().port, '127.0.0.1', () => r()); keep.push(c);
    })));
  }
  setTimeout(() => process.stdout.write('ready\\n'), 200);
});
// Reset instead of closing, so that no TIME_WAIT rows linger into the next measurement.
process.stdin.on('end', () => { for (const s of keep) s.resetAndDestroy(); setTimeout(() => process.exit(0), 200); }).resume();`;
async function startHolder(sockets) {
  const holder = track(spawn(process.execPath, ['-e', HOLDER, String(sockets / 2)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  await lineReader(holder)();
  return holder;
}

// A long-lived client: each input line opens a new connection and closes the previous one.
const CLIENT = `
import socket, sys
prev = None
for line in sys.stdin:
    s = socket.create_connection(('127.0.0.1', ${PORT}))
    if prev: prev.close()
    prev = s
`;

async function waitForChild(parent) {
  for (let i = 0; i < 400; i++) {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
        // The python3 itself: a version manager's shim may run helpers first.
        const python = /python[\d.]*$/.test(readlinkSync(`/proc/${name}/exe`));
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent && python) return Number(name);
      } catch {}
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the client did not start');
}

/** The proxy's resolver (no argv) with native and JavaScript procfs reads, and the baseline build when given. */
function compared() {
  return [
    ['native', new IdentityResolver({ cmdline: false })],
    ['js', new IdentityResolver({ cmdline: false, nativeProcfs: false })],
    ...(Baseline ? [['baseline', new Baseline({ cmdline: false })]] : []),
  ];
}

/** One resolution: wall time (ms) and CPU (ms, process.cpuUsage) pushed into `into` and `cpuInto`. */
async function timed(r, tuple, into, cpuInto) {
  const c0 = process.cpuUsage();
  const t0 = now();
  const id = await r.resolve(tuple);
  into.push(ms(t0));
  const c = process.cpuUsage(c0);
  cpuInto.push((c.user + c.system) / 1000);
  return id;
}

// A busy client, as the proxy bench's load is: one node process (under a shell) keeping 50
// connections open, each replaced as soon as it is closed; the connections are closed in the
// order they came, 40 behind, and the resolvers are told (as the proxy tells its resolver).
const BUSY_CLIENT = `
const net = require('net');
function one() { const s = net.connect(Number(process.argv[1]), '127.0.0.1'); s.on('error', () => {}); s.on('close', () => setImmediate(one)); }
for (let i = 0; i < 50; i++) one();
process.stdin.on('end', () => process.exit(0)).resume();`;

async function measureBusy() {
  for (const stale of accepted.splice(0)) stale.resetAndDestroy();
  const shell = track(spawn('bash', ['-c', '"$0" -e "$1" "$2"; true', process.execPath, BUSY_CLIENT, String(PORT)], { stdio: ['pipe', 'ignore', 'inherit'] }));
  const variants = compared();
  const out = Object.fromEntries(variants.map(([name]) => [name, { busy: [], busyCpu: [] }]));
  const open = [];
  let clientPid;
  try {
    for (let i = 0; i < BUSY && Date.now() < DEADLINE; i++) {
      const s = await nextAccepted();
      const tuple = tupleOf(s);
      for (const [name, r] of i % 2 === 0 ? variants : [...variants].reverse()) {
        const id = await timed(r, tuple, out[name].busy, out[name].busyCpu);
        clientPid ??= id.pid;
        if (id.pid === null || id.pid !== clientPid || !id.path.endsWith('/node')) throw new Error(`${name} resolved ${JSON.stringify(id)} instead of the busy client`);
      }
      open.push([s, tuple]);
      if (open.length > 40) {
        const [old, oldTuple] = open.shift();
        for (const [, r] of variants) r.released(oldTuple);
        old.resetAndDestroy();
      }
    }
  } finally {
    for (const [, r] of variants) r.close();
    shell.stdin.end();
    for (const [s] of open) s.resetAndDestroy();
  }
  return out;
}

async function measureRow(processes, sockets) {
  growSleepers(processes);
  const holder = await startHolder(sockets);
  // The clients get a parent of their own (a shell), as real clients do, rather than being
  // siblings of the load processes this benchmark starts.
  const client = track(spawn('bash', ['-c', 'python3 -c "$0"; true', CLIENT], { stdio: ['pipe', 'ignore', 'inherit'] }));
  const clientPid = await waitForChild(client.pid);
  const connect = async () => {
    client.stdin.write('\n');
    return nextAccepted();
  };
  const row = { nominal: processes, processes: processCount(), sockets, rows: tableRows(), cold: [], coldRun: [], coldRunWarmed: [], warmProcfs: [], warm: [], compare: {}, warmNew: [], miss: [], ss: [] };

  let previous = null;
  // Reset rather than close, so the loop itself leaves no TIME_WAIT rows behind.
  const rotate = (s) => {
    previous?.resetAndDestroy();
    previous = s;
  };

  for (let i = 0; i < COLD && Date.now() < DEADLINE; i++) {
    const s = await connect();
    rotate(s);
    const resolver = new IdentityResolver();
    const t0 = now();
    const id = await resolver.resolve(tupleOf(s));
    row.cold.push(ms(t0));
    resolver.close();
    if (id.pid !== clientPid) throw new Error(`resolved ${JSON.stringify(id)} instead of the client ${clientPid}`);
  }

  const storePath = join(storeDir, `hashes-${processes}-${sockets}.json`);
  for (let i = 0; i <= COLD && Date.now() < DEADLINE; i++) {
    const s = await connect();
    rotate(s);
    const resolver = new IdentityResolver({ hashStore: storePath });
    const t0 = now();
    const id = await resolver.resolve(tupleOf(s));
    // The first lookup fills the store (as an earlier run would have).
    if (i > 0) row.coldRun.push(ms(t0));
    resolver.close();
    if (id.pid !== clientPid) throw new Error(`resolved ${JSON.stringify(id)} instead of the client ${clientPid}`);
  }

  // The same, but warmed first (as a proxy does once it listens, before its first client).
  for (let i = 0; i < COLD && Date.now() < DEADLINE; i++) {
    const resolver = new IdentityResolver({ hashStore: storePath });
    await resolver.warm();
    const s = await connect();
    rotate(s);
    const t0 = now();
    const id = await resolver.resolve(tupleOf(s));
    row.coldRunWarmed.push(ms(t0));
    resolver.close();
    if (id.pid !== clientPid) throw new Error(`resolved ${JSON.stringify(id)} instead of the client ${clientPid}`);
  }

  const warmLoop = async (resolver, into) => {
    await resolver.resolve(tupleOf(previous));
    for (let i = 0; i < WARM && Date.now() < DEADLINE; i++) {
      const s = await connect();
      rotate(s);
      const t0 = now();
      const id = await resolver.resolve(tupleOf(s));
      into.push(ms(t0));
      if (id.pid !== clientPid) throw new Error(`resolved ${JSON.stringify(id)} instead of the client ${clientPid}`);
    }
  };
  const procfsResolver = new IdentityResolver({ socketSource: 'procfs' });
  await warmLoop(procfsResolver, row.warmProcfs);
  const resolver = new IdentityResolver();
  await warmLoop(resolver, row.warm);
  // The proxy's resolver (cmdline: false), procfs read natively and from JavaScript (and from a
  // baseline build when given): each socket looked up by each, in alternating order.
  const variants = compared();
  for (const [name] of variants) row.compare[name] = { warm: [], warmCpu: [], warmNew: [], warmNewCpu: [] };
  for (const [, r] of variants) await r.resolve(tupleOf(previous));
  for (let i = 0; i < WARM && Date.now() < DEADLINE; i++) {
    const s = await connect();
    const released = previous ? tupleOf(previous) : null;
    rotate(s);
    for (const [name, r] of i % 2 === 0 ? variants : [...variants].reverse()) {
      if (released) r.released(released);
      const id = await timed(r, tupleOf(s), row.compare[name].warm, row.compare[name].warmCpu);
      if (id.pid !== clientPid) throw new Error(`${name} resolved ${JSON.stringify(id)} instead of the client ${clientPid}`);
    }
  }
  for (let i = 0; i < SS_RUNS && Date.now() < DEADLINE; i++) {
    const t0 = now();
    const id = await procfsResolver.resolve({ clientAddress: '127.0.0.1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: PORT });
    row.miss.push(ms(t0));
    if (id.unresolved_reason !== 'no_socket_row') throw new Error(`expected a miss, got ${JSON.stringify(id)}`);
  }

  for (let i = 0; i < WARM_NEW && Date.now() < DEADLINE; i++) {
    const curl = track(spawn('bash', ['-c', `curl -s -o /dev/null http://127.0.0.1:${PORT}/; true`], { stdio: 'ignore' }));
    const s = await nextAccepted();
    const t0 = now();
    const id = await resolver.resolve(tupleOf(s));
    row.warmNew.push(ms(t0));
    if (!id.path.endsWith('/curl') || id.ancestors[0]?.pid !== curl.pid) throw new Error(`resolved ${JSON.stringify(id)} instead of curl`);
    for (const [name, r] of i % 2 === 0 ? variants : [...variants].reverse()) {
      const other = await timed(r, tupleOf(s), row.compare[name].warmNew, row.compare[name].warmNewCpu);
      if (other.pid !== id.pid || other.ancestors[0]?.pid !== curl.pid) throw new Error(`${name} resolved ${JSON.stringify(other)} instead of curl`);
    }
    s.end('HTTP/1.0 204 No Content\r\n\r\n');
    await new Promise((r) => curl.once('exit', r));
  }
  for (const [, r] of variants) r.close();

  for (let i = 0; i < SS_RUNS && Date.now() < DEADLINE; i++) {
    const s = await connect();
    rotate(s);
    const t0 = now();
    const out = execFileSync('ss', ['-tnpH', 'state', 'established', 'src', `127.0.0.1:${s.remotePort}`, 'dst', `127.0.0.1:${PORT}`], {
      encoding: 'utf8',
    });
    row.ss.push(ms(t0));
    if (!out.includes(`pid=${clientPid},`)) throw new Error(`ss did not name the client: ${out}`);
  }

  resolver.close();
  previous?.resetAndDestroy();
  client.stdin.end();
  holder.stdin.end();
  await new Promise((r) => holder.once('exit', r));
  return row;
}

console.log(`identity resolution vs ss -tnp (loopback; cold n=${COLD}, warm n=${WARM}, warm-new n=${WARM_NEW}, ss n=${SS_RUNS}; ms)`);
console.log('procs (total) sockets (table rows) | cold p50  p99 | cold run p50 p99 | warm procfs p50  p99 | warm diag p50  p99 | warm-new p50  p99 | procfs miss p50  p99 | ss -tnp p50  p99 | ss÷ procfs  diag  new (p50)');
const rows = [];
try {
  for (const processes of PROCESS_COUNTS) {
    for (const sockets of SOCKET_COUNTS) {
      if (Date.now() > DEADLINE) break;
      const r = await measureRow(processes, sockets);
      rows.push(r);
      const ss50 = pct(r.ss, 50);
      const cell = (xs, w) => `${f(pct(xs, 50)).padStart(w)} ${f(pct(xs, 99)).padStart(5)}`;
      console.log(
        `${String(r.nominal).padStart(5)} (${String(r.processes).padStart(5)}) ${String(r.sockets).padStart(7)} (${String(r.rows).padStart(6)}) | ` +
          `${cell(r.cold, 8)} | ${cell(r.coldRun, 10)} | ${cell(r.warmProcfs, 15)} | ${cell(r.warm, 13)} | ${cell(r.warmNew, 12)} | ${cell(r.miss, 15)} | ${cell(r.ss, 11)} | ` +
          `${(ss50 / pct(r.warmProcfs, 50)).toFixed(1).padStart(9)}x ${(ss50 / pct(r.warm, 50)).toFixed(0).padStart(4)}x ${(ss50 / pct(r.warmNew, 50)).toFixed(0).padStart(3)}x`,
      );
    }
  }
  for (const r of rows) {
    console.log(`${r.nominal} processes, ${r.sockets} sockets: a new resolver's first lookup (hash store on disk) p50 ${f(pct(r.coldRun, 50))} ms; warmed first (warm(): process table listed, store loaded) p50 ${f(pct(r.coldRunWarmed, 50))} ms, ×${(pct(r.coldRun, 50) / pct(r.coldRunWarmed, 50)).toFixed(1)} faster`);
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  for (const r of rows) {
    for (const phase of ['warm', 'warmNew']) {
      const of = (name) => r.compare[name]?.[phase] ?? [];
      const cpu = (name) => r.compare[name]?.[`${phase}Cpu`] ?? [];
      const line = Object.keys(r.compare)
        .map((name) => `${name} p50 ${f(pct(of(name), 50))} p99 ${f(pct(of(name), 99))} ms, CPU mean ${f(mean(cpu(name)) * 1000)} p50 ${f(pct(cpu(name), 50) * 1000)} µs`)
        .join(' | ');
      const ratios = Object.keys(r.compare)
        .filter((name) => name !== 'native')
        .map((name) => `${name}÷native p50 ×${(pct(of(name), 50) / pct(of('native'), 50)).toFixed(2)}, p99 ×${(pct(of(name), 99) / pct(of('native'), 99)).toFixed(2)}, CPU mean ×${(mean(cpu(name)) / mean(cpu('native'))).toFixed(2)} p50 ×${(pct(cpu(name), 50) / pct(cpu('native'), 50)).toFixed(2)}`)
        .join('; ');
      console.log(`${r.nominal} processes, ${r.sockets} sockets, ${phase === 'warm' ? 'warm (long-lived client)' : 'warm-new (a curl per connection)'}, alternating (n=${of('native').length}): ${line} — ${ratios}`);
    }
  }
  const at = (p, s) => rows.find((r) => r.sockets === s && r.nominal === p);
  const grow = (a, b, key) => (a && b ? (pct(b[key], 50) / pct(a[key], 50)).toFixed(1) : 'n/a');
  for (const [key, label] of [['warmProcfs', 'warm procfs'], ['warm', 'warm diag']]) {
    console.log(`growth of ${label} p50: 10→1000 processes ×${grow(at(10, 100), at(1000, 100), key)} (100 sockets), ` +
      `×${grow(at(10, 10_000), at(1000, 10_000), key)} (10000 sockets); 100→10000 sockets ×${grow(at(10, 100), at(10, 10_000), key)} (10 processes), ` +
      `×${grow(at(1000, 100), at(1000, 10_000), key)} (1000 processes)`);
  }
  const target = at(1000, 10_000);
  if (target) {
    for (const [key, label] of [['warmProcfs', 'procfs'], ['warm', 'sock_diag']]) {
      const xs = target[key];
      console.log(`target warm p99 <= 2 ms at 1000 processes / 10000 sockets, ${label}: p50 ${f(pct(xs, 50))} p90 ${f(pct(xs, 90))} p95 ${f(pct(xs, 95))} p99 ${f(pct(xs, 99))} max ${f(Math.max(...xs))} ms (${pct(xs, 99) <= 2 ? 'met' : 'NOT met'})`);
    }
  }
  for (const [key, label] of [['warmProcfs', 'warm procfs'], ['warm', 'warm diag'], ['warmNew', 'warm-new'], ['miss', 'procfs miss'], ['coldRun', 'cold run'], ['cold', 'cold']]) {
    const slower = rows.filter((r) => pct(r[key], 50) >= pct(r.ss, 50));
    console.log(`${label} faster than ss -tnp (p50) in every row: ${slower.length === 0 ? 'yes' : `no (${slower.length} rows)`}`);
  }
  if (BUSY > 0 && Date.now() < DEADLINE) {
    const busy = await measureBusy();
    const of = (name) => busy[name].busy;
    const cpu = (name) => busy[name].busyCpu;
    const line = Object.keys(busy).map((name) => `${name} p50 ${f(pct(of(name), 50))} p99 ${f(pct(of(name), 99))} ms, CPU mean ${f(mean(cpu(name)) * 1000)} p50 ${f(pct(cpu(name), 50) * 1000)} µs`).join(' | ');
    const ratios = Object.keys(busy)
      .filter((name) => name !== 'native')
      .map((name) => `${name}÷native p50 ×${(pct(of(name), 50) / pct(of('native'), 50)).toFixed(2)}, CPU mean ×${(mean(cpu(name)) / mean(cpu('native'))).toFixed(2)} p50 ×${(pct(cpu(name), 50) / pct(cpu('native'), 50)).toFixed(2)}`)
      .join('; ');
    console.log(`busy client (one node process, 50 connections at a time), alternating (n=${of('native').length}): ${line} — ${ratios}`);
  }
} finally {
  server.close();
  killAll();
  rmSync(storeDir, { recursive: true, force: true });
}
process.exit(0);
