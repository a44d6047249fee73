// Engine benchmark: decisions per second and p50/p99 latency of PolicyEngine.decide() (the Rego
// compiled to wasm, in-process) for 10 and for 1,000 generated policies, against the same
// decisions asked of `opa run --server` over HTTP on loopback (what a user would otherwise
// deploy), measured in the same run. Needs `npm run build` and the pinned opa (scripts/setup.sh).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { PolicyEngine } from '../dist/engine/engine.js';
import { buildDecisionInput } from '../dist/engine/input.js';
import { BUILTIN_REGO_DIR, opaBinary } from '../dist/engine/opa-cli.js';
import { loadPolicyText } from '../dist/policy/load.js';

const SIZES = [10, 1000];
const WARMUP_CALLS = 5_000;
const MEASURED_CALLS = 40_000; // per size, in-process
const SERVER_CALLS = 4_000; // per size, over HTTP
const PER_REQUEST_CALLS = 2_000; // per request of the mix, in-process
const PHASE_BUDGET_MS = 15_000; // no phase runs longer than this, whatever the counts say
const TARGET_P50_US = 30;
const TARGET_SCALE = 2;
const TARGET_SERVER_RATIO = 20;

// --- the generated policy ---------------------------------------------------------------------

const name = (i) => `team-${String(i).padStart(4, '0')}`;
const hasBinaries = (i) => i % 3 !== 0;
const hasRest = (i) => i % 4 === 0;
const hasAllowedIps = (i) => i % 10 === 3;
const hasHostless = (i) => i % 100 === 7;

/** One policy: exact, `*.` and `**.` hosts, several ports, maybe L7 rules and allowed_ips. */
function generatePolicy(i) {
  const endpoints = [
    { host: `svc${i}.example.com`, ports: i % 2 === 0 ? [443] : [443, 8443] },
    { host: `*.cdn${i}.example.net`, port: 443 },
    { host: `**.pkg${i}.example.org`, ports: [80, 443] },
    { host: `mirror-*.dist${i}.example.io`, port: 443 },
  ];
  if (hasRest(i)) {
    endpoints.push({
      host: `api${i}.example.com`,
      port: 8080,
      protocol: 'rest',
      rules: [{ allow: { method: 'GET', path: '/v1/**' } }, { allow: { method: 'POST', path: '/v1/items/*' } }],
      deny_rules: [{ method: '*', path: '/v1/admin/**' }],
    });
  }
  if (hasAllowedIps(i)) endpoints.push({ host: `db${i}.example.com`, port: 5432, allowed_ips: ['203.0.113.0/24'] });
  if (hasHostless(i)) endpoints.push({ allowed_ips: [`10.${i % 256}.0.0/16`], port: 5433 });
  const policy = { endpoints };
  if (hasBinaries(i)) {
    policy.binaries = [{ path: `/usr/bin/tool${i}` }, { path: `/opt/app${i}/**/bin/*` }, { path: '/usr/lib/node_modules/**/bin/*.js' }];
  }
  return policy;
}

function generatePolicyFile(count) {
  const doc = { version: 1, network_policies: {} };
  for (let i = 0; i < count; i++) doc.network_policies[name(i)] = generatePolicy(i);
  // JSON is YAML: the loader parses and validates it like any policy file.
  return loadPolicyText(JSON.stringify(doc), `bench-${count}.yaml`);
}

/** The first index at or after `from` (mod count) whose policy has the property. */
function pick(count, from, predicate) {
  for (let k = 0; k < count; k++) {
    const i = (from + k) % count;
    if (predicate(i)) return i;
  }
  throw new Error('no policy with that property');
}

/** A fixed mix: allowed, denied endpoint, denied binary, unresolved, L7, allowed_ips. */
function requestMix(count) {
  const mid = Math.floor(count / 2);
  const bin = pick(count, mid, hasBinaries);
  const open = pick(count, mid, (i) => !hasBinaries(i));
  const rest = pick(count, mid, (i) => hasRest(i) && hasBinaries(i));
  const ips = pick(count, mid, (i) => hasAllowedIps(i) && !hasBinaries(i));
  const last = pick(count, count - 1, hasBinaries);
  const mix = [
    ['allow exact host, literal binary', { host: `svc${bin}.example.com`, port: 443, binary: `/usr/bin/tool${bin}` }],
    ['allow *. host, ancestor ** glob', { host: `a.cdn${last}.example.net`, port: 443, binary: '/usr/bin/bash', ancestors: [`/opt/app${last}/x/y/bin/run`, '/sbin/init'] }],
    ['allow **. host, ** glob binary', { host: `x.y.pkg${bin}.example.org`, port: 80, binary: '/usr/lib/node_modules/npm/bin/npm-cli.js' }],
    ['allow mirror-*. host, no binaries', { host: `mirror-eu.dist${open}.example.io`, port: 443, binary: '/usr/bin/curl' }],
    ['deny unknown host', { host: 'unknown.example.com', port: 443, binary: '/usr/bin/curl' }],
    ['deny port not listed', { host: `svc${bin}.example.com`, port: 22, binary: `/usr/bin/tool${bin}` }],
    ['deny binary', { host: `svc${bin}.example.com`, port: 443, binary: '/usr/bin/evil', ancestors: ['/usr/bin/bash'] }],
    ['allow unresolved, no binaries', { host: `svc${open}.example.com`, port: 443 }],
    ['deny unresolved, binaries', { host: `svc${bin}.example.com`, port: 443 }],
    ['allow L7 GET /v1/**', { host: `api${rest}.example.com`, port: 8080, binary: `/usr/bin/tool${rest}`, method: 'GET', path: '/v1/things/1' }],
    ['deny L7 deny rule', { host: `api${rest}.example.com`, port: 8080, binary: `/usr/bin/tool${rest}`, method: 'DELETE', path: '/v1/admin/users' }],
    ['allow allowed_ips', { host: `db${ips}.example.com`, port: 5432, binary: '/usr/bin/psql', addresses: ['203.0.113.9'] }],
  ];
  return { labels: mix.map(([label]) => label), inputs: mix.map(([, facts]) => buildDecisionInput(facts)) };
}

// --- measuring --------------------------------------------------------------------------------

function percentile(sortedNs, p) {
  const index = Math.min(sortedNs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedNs.length) - 1));
  return Number(sortedNs[index]) / 1000;
}

function summarise(samples, elapsedNs) {
  const sorted = BigInt64Array.from(samples).sort();
  return {
    calls: samples.length,
    perSecond: samples.length / (Number(elapsedNs) / 1e9),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
  };
}

function measureInProcess(engine, inputs) {
  const deadline = Date.now() + PHASE_BUDGET_MS;
  for (let n = 0; n < WARMUP_CALLS; n++) engine.decide(inputs[n % inputs.length]);
  const samples = [];
  const started = process.hrtime.bigint();
  for (let n = 0; n < MEASURED_CALLS && (n % 1000 !== 0 || Date.now() < deadline); n++) {
    const t0 = process.hrtime.bigint();
    engine.decide(inputs[n % inputs.length]);
    samples.push(process.hrtime.bigint() - t0);
  }
  const timed = summarise(samples, process.hrtime.bigint() - started);
  // Throughput without the clock reads between calls.
  const batch = Math.min(samples.length, 20_000);
  const t0 = process.hrtime.bigint();
  for (let n = 0; n < batch; n++) engine.decide(inputs[n % inputs.length]);
  timed.perSecond = batch / (Number(process.hrtime.bigint() - t0) / 1e9);
  return timed;
}

/** p50 of each request of the mix on its own: where the time goes. */
function measureEachRequest(engine, inputs) {
  return inputs.map((input) => {
    const samples = [];
    for (let n = 0; n < 500; n++) engine.decide(input);
    for (let n = 0; n < PER_REQUEST_CALLS; n++) {
      const t0 = process.hrtime.bigint();
      engine.decide(input);
      samples.push(process.hrtime.bigint() - t0);
    }
    return summarise(samples, 1n).p50;
  });
}

// --- the OPA server ---------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function post(agent, port, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`opa answered ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.setTimeout(5_000, () => req.destroy(new Error('opa did not answer within 5 s')));
    req.on('error', reject);
    req.end(body);
  });
}

async function startOpaServer(dataFile, work) {
  const port = await freePort();
  const child = spawn(
    opaBinary(),
    ['run', '--server', '--addr', `127.0.0.1:${port}`, '--log-level', 'error', '--disable-telemetry', join(BUILTIN_REGO_DIR, 'authz.rego'), dataFile],
    { cwd: work, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`opa run exited ${child.exitCode}: ${stderr}`);
    const ready = await new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/health' }, (res) => { res.resume(); resolve(res.statusCode === 200); }).on('error', () => resolve(false));
    });
    if (ready) return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`opa run --server did not become ready: ${stderr}`);
}

/** Stops the server and waits for it to exit (SIGKILL after 5 s). */
async function stopOpaServer(server) {
  if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function measureServer(server, inputs, expected) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const path = '/v1/data/portcullis/authz/decision';
  const bodies = inputs.map((input) => JSON.stringify({ input }));
  let mismatches = 0;
  try {
    for (let n = 0; n < inputs.length; n++) {
      const answer = JSON.parse(await post(agent, server.port, path, bodies[n])).result;
      if (!isDeepStrictEqual(answer, expected[n])) mismatches++;
    }
    const deadline = Date.now() + PHASE_BUDGET_MS;
    for (let n = 0; n < 500; n++) await post(agent, server.port, path, bodies[n % bodies.length]);
    const samples = [];
    const started = process.hrtime.bigint();
    for (let n = 0; n < SERVER_CALLS && (n % 100 !== 0 || Date.now() < deadline); n++) {
      const t0 = process.hrtime.bigint();
      await post(agent, server.port, path, bodies[n % bodies.length]);
      samples.push(process.hrtime.bigint() - t0);
    }
    return { ...summarise(samples, process.hrtime.bigint() - started), mismatches };
  } finally {
    agent.destroy();
  }
}

// --- the run ----------------------------------------------------------------------------------

const fmt = (n, digits = 1) => n.toFixed(digits);
const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
let server = null;
const stop = async () => {
  await stopOpaServer(server);
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => { stop().finally(() => process.exit(130)); });

try {
  const rows = [];
  for (const size of SIZES) {
    const loaded = generatePolicyFile(size);
    const engine = await PolicyEngine.create(loaded);
    const { labels, inputs } = requestMix(size);
    const decisions = inputs.map((input) => engine.decide(input));
    if (decisions.some((d) => d.reason.startsWith('policy evaluation failed'))) throw new Error('engine failed on the request mix');
    const allowed = decisions.filter((d) => d.allow).length;
    const inProcess = measureInProcess(engine, inputs);
    const eachRequest = measureEachRequest(engine, inputs);

    const dataFile = join(work, `data-${size}.json`);
    writeFileSync(dataFile, JSON.stringify({ portcullis: loaded.data }));
    server = await startOpaServer(dataFile, work);
    const overHttp = await measureServer(server, inputs, decisions);
    await stopOpaServer(server);
    server = null;
    rows.push({ size, endpoints: loaded.policies.reduce((n, p) => n + p.endpoints.length, 0), allowed, requests: inputs.length, inProcess, overHttp, labels, eachRequest, decisions });
  }

  console.log(`request mix: ${rows[0].requests} requests per size (allowed ${rows.map((r) => r.allowed).join('/')}; the rest denied: endpoint, port, binary, unresolved, L7 deny rule)`);
  console.log('');
  console.log('| policies | endpoints | path | calls | decisions/s | p50 µs | p99 µs |');
  console.log('|---:|---:|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.size} | ${r.endpoints} | in-process wasm decide() | ${r.inProcess.calls} | ${fmt(r.inProcess.perSecond, 0)} | ${fmt(r.inProcess.p50)} | ${fmt(r.inProcess.p99)} |`);
    console.log(`| ${r.size} | ${r.endpoints} | opa run --server, HTTP keep-alive | ${r.overHttp.calls} | ${fmt(r.overHttp.perSecond, 0)} | ${fmt(r.overHttp.p50)} | ${fmt(r.overHttp.p99)} |`);
  }
  const [small, large] = rows;
  console.log('');
  console.log(`| request (in-process, alone) | decision | p50 µs at ${small.size} | p50 µs at ${large.size} |`);
  console.log('|---|---|---:|---:|');
  small.labels.forEach((label, i) => {
    console.log(`| ${label} | ${small.decisions[i].decision}/${large.decisions[i].decision} | ${fmt(small.eachRequest[i])} | ${fmt(large.eachRequest[i])} |`);
  });
  const scale = large.inProcess.p50 / small.inProcess.p50;
  const serverRatio = small.overHttp.p50 / small.inProcess.p50;
  const serverRatioLarge = large.overHttp.p50 / large.inProcess.p50;
  const mismatches = rows.reduce((n, r) => n + r.overHttp.mismatches, 0);
  console.log('');
  console.log(`p50 ratio 1000/10 policies (in-process): ${fmt(scale, 2)}×`);
  console.log(`p50 ratio opa server / in-process: ${fmt(serverRatio, 1)}× at 10 policies, ${fmt(serverRatioLarge, 1)}× at 1000`);
  console.log(`decisions differing between opa server and wasm: ${mismatches}`);
  console.log('');
  const verdict = (ok) => (ok ? 'PASS' : 'MISS');
  console.log(`${verdict(small.inProcess.p50 <= TARGET_P50_US)}  p50 at 10 policies ≤ ${TARGET_P50_US} µs (${fmt(small.inProcess.p50)} µs)`);
  console.log(`${verdict(scale <= TARGET_SCALE)}  p50 at 1000 policies ≤ ${TARGET_SCALE}× p50 at 10 (${fmt(scale, 2)}×)`);
  console.log(`${verdict(serverRatio >= TARGET_SERVER_RATIO)}  in-process ≥ ${TARGET_SERVER_RATIO}× faster than the opa server round trip (${fmt(serverRatio, 1)}×)`);
  console.log(`${verdict(mismatches === 0)}  opa server and wasm agree on every request`);
} catch (err) {
  console.error(`engine bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await stop();
}
