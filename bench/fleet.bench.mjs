// Fleet benchmark (OPA's management plane).
// 1. Propagation: 20 `portcullis proxy --config` processes pull one bundle from a bundle server
//    on loopback; a new revision is published five times; the figure is the time from publishing
//    to each proxy saying the revision is active (p50/p99 over 100 activations), with long polling
//    (`long_polling_timeout_seconds`) and, as the baseline in the same run, with 1-2 s polling.
// 2. Decision-log overhead: CONNECT tunnels per second and the proxy's CPU per tunnel (from
//    /proc/<pid>/stat) through `portcullis proxy --config` with decision logs uploaded to a local
//    collector, against the same proxy with the same bundle and no decision logs; the two run in
//    alternation, three rounds each, upstream in the simulated internet.
// Needs `npm run build`. FLEET_BENCH_PARTS: propagation,logs (default both); FLEET_BENCH_NODE_ARGS:
// extra node flags for the proxies (e.g. --cpu-prof).
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { startSimulatedInternet } from '../dist/sim/internet.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const PROXIES = 20;
const REVISIONS = 5;
const UPSTREAM_PORT = 9000;
// Each measured phase dials its own upstream port: tens of thousands of connections leave as many
// TIME_WAIT entries, and a later phase to the same address and port pays for them in connect().
const PHASE_PORTS = 16;
const CONCURRENCY = 20;
const RATE_SECONDS = 4;
const ROUNDS = Number(process.env.FLEET_BENCH_ROUNDS ?? 3);

const dir = mkdtempSync(join(tmpdir(), 'pc-fleet-bench-'));
const children = [];
let sim;
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);

const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
writeFileSync(join(dir, 'key.pem'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();

function buildRevision(rev, host, allowedIps) {
  const policy = join(dir, `policy-${rev}.yaml`);
  const ips = allowedIps ? `, allowed_ips: ["${allowedIps}"]` : '';
  writeFileSync(policy, `version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n      - { host: "${host}", ports: [${Array.from({ length: PHASE_PORTS }, (_, i) => UPSTREAM_PORT + i).join(', ')}]${ips} }\n`);
  const out = join(dir, `bundle-${rev}.tar.gz`);
  execFileSync(process.execPath, [CLI, 'build', '--policy', policy, '--revision', rev, '--signing-key', join(dir, 'key.pem'), '--out', out]);
  return readFileSync(out);
}

/** A bundle server that speaks OPA's long polling; publish() answers every waiting poll at once. */
function bundleServer() {
  let revision = 0;
  let body;
  const waiting = new Set();
  const server = http.createServer((req, res) => {
    const answer = () => res.writeHead(200, { etag: `"${revision}"`, 'content-type': 'application/vnd.openpolicyagent.bundles' }).end(body);
    const wait = /wait=(\d+)/.exec(String(req.headers.prefer ?? ''));
    if (req.headers['if-none-match'] !== `"${revision}"`) return answer();
    if (!wait) return res.writeHead(304).end();
    const timer = setTimeout(() => {
      waiting.delete(wake);
      res.writeHead(304, { 'content-type': 'application/vnd.openpolicyagent.bundles' }).end();
    }, Number(wait[1]) * 1000);
    const wake = () => {
      clearTimeout(timer);
      answer();
    };
    waiting.add(wake);
  });
  return {
    server,
    publish(bytes) {
      body = bytes;
      revision++;
      for (const wake of [...waiting]) wake();
      waiting.clear();
    },
  };
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function config(bundlePort, polling, collectorPort) {
  const logs = collectorPort
    ? `decision_logs:\n  service: collector\n  reporting:\n    min_delay_seconds: 1\n    max_delay_seconds: 2\n`
    : '';
  const collector = collectorPort ? `  collector:\n    url: http://127.0.0.1:${collectorPort}\n` : '';
  return `services:\n  bundles:\n    url: http://127.0.0.1:${bundlePort}\n${collector}bundles:\n  portcullis:\n    service: bundles\n    resource: bundle.tar.gz\n    polling:\n${polling}    signing:\n      keyid: bench\nkeys:\n  bench:\n    algorithm: RS256\n    key: |\n${publicPem.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n${logs}`;
}

/** Starts a proxy on --config; calls onActive(revision, time) for each activation it reports. */
function startProxy(configFile, persistence, onActive) {
  const nodeArgs = (process.env.FLEET_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'proxy', '--config', configFile, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, HOME: persistence },
  });
  children.push(child);
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start: ${text}`)), 30_000);
    child.stderr.on('data', (d) => {
      const now = performance.now();
      text += d.toString();
      for (const m of d.toString().matchAll(/revision (\S+) active/g)) onActive(m[1], now);
      const port = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
      if (port && !child.port) {
        child.port = Number(port[1]);
        clearTimeout(timer);
        resolve(child);
      }
    });
  });
}

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function propagation(label, polling) {
  const bundles = bundleServer();
  bundles.publish(buildRevision('r0', 'api.example.com'));
  const port = await listen(bundles.server);
  const configFile = join(dir, `${label}.yaml`);
  writeFileSync(configFile, config(port, polling));
  const seen = new Map();
  const proxies = await Promise.all(Array.from({ length: PROXIES }, (_, i) => startProxy(configFile, join(dir, `${label}-home-${i}`), (rev, t) => seen.set(`${i}/${rev}`, t))));
  const until = async (pred, ms) => {
    const end = Date.now() + ms;
    while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  };
  await until(() => [...Array(PROXIES).keys()].every((i) => seen.has(`${i}/r0`)), 30_000);
  const delays = [];
  for (let k = 1; k <= REVISIONS; k++) {
    const bytes = buildRevision(`r${k}`, `api${k}.example.com`);
    await new Promise((r) => setTimeout(r, 300)); // every long poll is waiting again
    const published = performance.now();
    bundles.publish(bytes);
    await until(() => [...Array(PROXIES).keys()].every((i) => seen.has(`${i}/r${k}`)), 15_000);
    for (let i = 0; i < PROXIES; i++) delays.push((seen.get(`${i}/r${k}`) ?? Infinity) - published);
  }
  for (const p of proxies) p.kill('SIGTERM');
  bundles.server.closeAllConnections();
  bundles.server.close();
  return { p50: quantile(delays, 0.5), p99: quantile(delays, 0.99), missing: delays.filter((d) => !Number.isFinite(d)).length };
}

// --- decision-log overhead on the tunnel rate ----------------------------------------------

function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** One tunnel: CONNECT, one echoed line through it, close (the simulated internet's echo port). */
function tunnelOnce(proxyPort, address, upstreamPort) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('tunnel timed out'));
    }, 10_000);
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    let buf = '';
    let pinged = false;
    s.on('data', (c) => {
      buf += c.toString('latin1');
      const head = buf.indexOf('\r\n\r\n');
      if (head === -1) return;
      if (!buf.startsWith('HTTP/1.1 200')) {
        clearTimeout(timer);
        s.destroy();
        return reject(new Error(buf.slice(0, 200)));
      }
      if (!pinged) {
        pinged = true;
        s.write('ping\n');
      }
      if (buf.slice(head + 4).includes('ping')) {
        clearTimeout(timer);
        s.destroy();
        resolve();
      }
    });
    s.on('connect', () => s.write(`CONNECT ${address}:${upstreamPort} HTTP/1.1\r\nHost: ${address}\r\n\r\n`));
  });
}

async function rate(proxy, address, upstreamPort) {
  const cpu0 = cpuSeconds(proxy.pid);
  const deadline = performance.now() + RATE_SECONDS * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline && failed < 100) {
        try {
          await tunnelOnce(proxy.port, address, upstreamPort);
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { rate: done / RATE_SECONDS, cpuMs: ((cpuSeconds(proxy.pid) - cpu0) * 1000) / Math.max(1, done), failed };
}

async function decisionLogOverhead() {
  sim = await startSimulatedInternet({ hosts: { 'upstream.bench.example': {} }, extraPorts: Array.from({ length: PHASE_PORTS }, (_, i) => UPSTREAM_PORT + i) });
  const address = sim.hosts['upstream.bench.example'].v4;
  const bundles = bundleServer();
  bundles.publish(buildRevision('rate', address, `${address}/32`));
  const bundlePort = await listen(bundles.server);
  let received = 0;
  const collector = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/logs') received += JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()).length;
      res.writeHead(200).end();
    });
  });
  const collectorPort = await listen(collector);
  const plainFile = join(dir, 'plain.yaml');
  const loggedFile = join(dir, 'logged.yaml');
  const polling = '      min_delay_seconds: 60\n      max_delay_seconds: 120\n';
  writeFileSync(plainFile, config(bundlePort, polling));
  writeFileSync(loggedFile, config(bundlePort, polling, collectorPort));
  const results = { plain: [], logged: [] };
  let phase = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, file] of round % 2 === 0 ? [['plain', plainFile], ['logged', loggedFile]] : [['logged', loggedFile], ['plain', plainFile]]) {
      let active = false;
      const proxy = await startProxy(file, join(dir, `rate-${label}-${round}`), () => (active = true));
      while (!active) await new Promise((r) => setTimeout(r, 20));
      await rate(proxy, address, UPSTREAM_PORT + (phase++ % PHASE_PORTS)); // warm-up
      results[label].push(await rate(proxy, address, UPSTREAM_PORT + (phase++ % PHASE_PORTS)));
      proxy.kill('SIGTERM');
      await new Promise((r) => proxy.once('exit', r));
    }
  }
  collector.close();
  bundles.server.close();
  await sim.close();
  return { ...results, received };
}

const median = (xs) => quantile(xs, 0.5);
const parts = (process.env.FLEET_BENCH_PARTS ?? 'propagation,logs').split(',');
try {
  if (parts.includes('propagation')) {
  const long = await propagation('long', '      min_delay_seconds: 60\n      max_delay_seconds: 120\n      long_polling_timeout_seconds: 30\n');
  const short = await propagation('short', '      min_delay_seconds: 1\n      max_delay_seconds: 2\n');
  console.log(`propagation to ${PROXIES} proxies, ${REVISIONS} revisions (publish → active):`);
  console.log(`  long polling       p50 ${long.p50.toFixed(1)} ms  p99 ${long.p99.toFixed(1)} ms  (missing ${long.missing})`);
  console.log(`  polling every 1-2 s p50 ${short.p50.toFixed(1)} ms  p99 ${short.p99.toFixed(1)} ms  (missing ${short.missing})`);
  console.log(`  long polling is x${(short.p99 / long.p99).toFixed(1)} faster at p99`);
  }
  if (parts.includes('logs')) {
  const o = await decisionLogOverhead();
  const plainRate = median(o.plain.map((r) => r.rate));
  const loggedRate = median(o.logged.map((r) => r.rate));
  const plainCpu = median(o.plain.map((r) => r.cpuMs));
  const loggedCpu = median(o.logged.map((r) => r.cpuMs));
  console.log(`decision logs (${CONCURRENCY} clients, CONNECT + ping, ${ROUNDS} alternating rounds; ${o.received} events received by the collector):`);
  console.log(`  without: ${plainRate.toFixed(0)} tunnels/s, ${plainCpu.toFixed(3)} ms CPU per tunnel`);
  console.log(`  with:    ${loggedRate.toFixed(0)} tunnels/s, ${loggedCpu.toFixed(3)} ms CPU per tunnel`);
  console.log(`  rate ratio ${(loggedRate / plainRate).toFixed(3)}, CPU ratio ${(loggedCpu / plainCpu).toFixed(3)}`);
  }
} finally {
  await sim?.close();
  cleanup();
}
