// TLS inspection benchmark: the same upstream (the simulated internet's HTTPS server) reached
// through `portcullis proxy` as a passthrough tunnel and as an inspected connection, in one run.
// Rows: connections/s with 20 concurrent clients each doing CONNECT + TLS + GET + close, the
// proxy's CPU time per connection (from /proc, independent of what else the machine does), and
// one bulk transfer (256 MiB) per mode. Clients are in this process (Node's TLS), so on a
// 2-core machine they compete with the proxy: connections/s is a floor, CPU/connection is not.
// Comparisons with srt's tlsTerminate and mitmdump are not part of this file yet.
// Needs `npm run build`. Env: INSPECT_BENCH_SECONDS (default 5), INSPECT_BENCH_BULK_MIB (256),
// INSPECT_BENCH_NODE_ARGS (extra node flags for the proxy, e.g. --cpu-prof --cpu-prof-dir=DIR).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { startSimulatedInternet } from '../dist/sim/internet.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const SECONDS = Number(process.env.INSPECT_BENCH_SECONDS ?? 5);
const BULK_BYTES = Number(process.env.INSPECT_BENCH_BULK_MIB ?? 256) * 1024 * 1024;
const CONCURRENCY = 20;
const dir = mkdtempSync(join(tmpdir(), 'pc-inspect-bench-'));
let sim;
let proxy;

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function startProxy(policy) {
  const args = [CLI, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--no-watch', '--audit', join(dir, 'audit.jsonl'),
    '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--ca-cert', join(dir, 'ca/ca.crt'), '--ca-key', join(dir, 'ca/ca.key'), '--upstream-ca', join(dir, 'sim-ca.pem')];
  const nodeArgs = (process.env.INSPECT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start: ${err}`)), 20_000);
    child.stderr.on('data', (c) => {
      err += c;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
  });
}

/** CONNECT host:443, TLS, `GET path`, read to the end; resolves with the bytes received. */
function exchange(host, path, ca) {
  return new Promise((resolve, reject) => {
    const raw = net.connect(proxy.port, '127.0.0.1', () => raw.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`));
    raw.once('data', (head) => {
      if (!head.toString().startsWith('HTTP/1.1 200')) return reject(new Error(head.toString()));
      const s = tls.connect({ socket: raw, servername: host, ca, ALPNProtocols: ['http/1.1'] }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
      let bytes = 0;
      s.on('data', (c) => (bytes += c.length));
      s.on('end', () => {
        s.destroy();
        resolve(bytes);
      });
      s.on('error', reject);
    });
    raw.on('error', reject);
  });
}

async function rate(host, ca) {
  const cpu0 = cpuMs(proxy.child.pid);
  const end = Date.now() + SECONDS * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (Date.now() < end) {
      await exchange(host, '/v1/x', ca);
      done++;
    }
  }));
  return { perSecond: done / SECONDS, cpuPerConnectionMs: (cpuMs(proxy.child.pid) - cpu0) / done };
}

async function bulk(host, ca) {
  const t0 = process.hrtime.bigint();
  const bytes = await exchange(host, `/bytes/${BULK_BYTES}`, ca);
  return bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - t0) / 1e9);
}

try {
  sim = await startSimulatedInternet({ hosts: { 'inspect.sim.test': {}, 'pass.sim.test': {} } });
  execFileSync(process.execPath, [CLI, 'ca', 'init', '--out', join(dir, 'ca')]);
  writeFileSync(join(dir, 'sim-ca.pem'), sim.ca.certPem);
  const cidrs = (h) => JSON.stringify([`${sim.hosts[h].v4}/32`, `${sim.hosts[h].v6}/128`]);
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, `version: 1
network_policies:
  bench:
    endpoints:
      - { host: inspect.sim.test, port: 443, tls: inspect, allowed_ips: ${cidrs('inspect.sim.test')} }
      - { host: pass.sim.test, port: 443, allowed_ips: ${cidrs('pass.sim.test')} }
`);
  proxy = await startProxy(policy);
  const ca = [readFileSync(join(dir, 'ca/ca.crt'), 'utf8'), sim.ca.certPem];
  await exchange('inspect.sim.test', '/warm', ca);
  await exchange('pass.sim.test', '/warm', ca);
  const rows = [];
  for (const [mode, host] of [['passthrough', 'pass.sim.test'], ['inspected', 'inspect.sim.test']]) {
    const r = await rate(host, ca);
    rows.push({ mode, 'connections/s': Math.round(r.perSecond), 'proxy CPU ms/connection': r.cpuPerConnectionMs.toFixed(2), 'bulk MiB/s': Math.round(await bulk(host, ca)) });
  }
  console.table(rows);
  const [pass, inspected] = rows;
  console.log(`inspected bulk / passthrough bulk: ${(inspected['bulk MiB/s'] / pass['bulk MiB/s']).toFixed(2)}`);
} finally {
  proxy?.child.kill('SIGTERM');
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
}
