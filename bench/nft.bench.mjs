// nft fence benchmark: TCP connections per second and bulk throughput between two network
// namespaces, without a ruleset (baseline) and with the compiled ruleset of a policy with
// 10,000 CIDR endpoints and 1,000 hostname endpoints; and the compile + apply time of that
// policy. Targets: ratio ≥ 0.9 against the baseline of the same run; compile + apply < 1 s.
//
// Run: npm run build && node bench/nft.bench.mjs   (root; creates and removes its namespaces)
// Env: NFT_BENCH_SECONDS (per connection-rate run, default 2), NFT_BENCH_BYTES (per bulk run,
// default 1 GiB), NFT_BENCH_CONCURRENCY (default 16), NFT_BENCH_ROUNDS (default 5).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { applyRuleset, deleteRuleset, nftAvailable } from '../dist/nft/apply.js';
import { counterName, hostMapName, kernelEndpoints } from '../dist/nft/names.js';
import { renderRuleset } from '../dist/nft/render.js';
import { loadPolicyText } from '../dist/policy/load.js';
import { createLab } from '../testdata/nft/lab.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOAD = path.join(HERE, '../testdata/nft/load.mjs');
const SECONDS = Number(process.env.NFT_BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.NFT_BENCH_ROUNDS ?? 5);
const BYTES = Number(process.env.NFT_BENCH_BYTES ?? 1024 ** 3);
const CONCURRENCY = Number(process.env.NFT_BENCH_CONCURRENCY ?? 16);
const CIDR_ENDPOINTS = 10_000;
const HOST_ENDPOINTS = 1_000;
const DIRECT_TARGET = '198.51.100.10';
const HOST_TARGET = '203.0.113.10';
// Connection tracking alone (what "established/related accepted" needs): separates the cost of
// conntrack from the cost of the fence's own rules.
const CONNTRACK_ONLY = [
  'table inet portcullis',
  'delete table inet portcullis',
  'table inet portcullis {',
  '\tchain output {',
  '\t\ttype filter hook output priority filter; policy accept;',
  '\t\tct state established,related accept',
  '\t}',
  '}',
  '',
].join('\n');

/** 10,000 CIDR endpoints (100 policies × 100) and 1,000 hostname endpoints (10 × 100), no binaries. */
function benchPolicyYaml(port) {
  const lines = ['version: 1', 'network_policies:'];
  for (let p = 0; p < CIDR_ENDPOINTS / 100; p++) {
    lines.push(`  cidr-${String(p).padStart(3, '0')}:`, '    endpoints:');
    for (let e = 0; e < 100; e++) {
      const i = p * 100 + e;
      lines.push(`      - { allowed_ips: ["10.${i >> 8}.${i & 255}.0/24"], ports: [443, ${1024 + (i % 1000)}] }`);
    }
  }
  // The benchmark's own destination: one CIDR endpoint among the others.
  lines[lines.length - 1] = `      - { allowed_ips: ["198.51.100.0/24"], ports: [443, ${port}] }`;
  for (let p = 0; p < HOST_ENDPOINTS / 100; p++) {
    lines.push(`  names-${String(p).padStart(2, '0')}:`, '    endpoints:');
    for (let e = 0; e < 100; e++) lines.push(`      - { host: "h${p * 100 + e}.bench.example", ports: [443, ${port}] }`);
  }
  return `${lines.join('\n')}\n`;
}

async function load(lab, args) {
  const r = await execa('ip', ['netns', 'exec', lab.cli, process.execPath, LOAD, ...args.map(String)], { timeout: 120_000 });
  return JSON.parse(r.stdout);
}

async function connRate(lab, address, port) {
  const r = await load(lab, ['connect', address, port, SECONDS, CONCURRENCY]);
  if (r.failed > 0) throw new Error(`${r.failed} connections to ${address}:${port} failed`);
  return r.connections / r.seconds;
}

async function throughput(lab, address, port) {
  const r = await load(lab, ['bulk', address, port, BYTES]);
  if (r.bytes !== BYTES) throw new Error(`bulk transfer delivered ${r.bytes} of ${BYTES} bytes`);
  return (r.bytes * 8) / r.seconds / 1e9;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const verdict = (ok) => (ok ? 'meets target' : 'MISSES target');

async function main() {
  const available = await nftAvailable();
  if (!available.ok) {
    console.log(`nft benchmark skipped: ${available.why}`);
    return;
  }
  const lab = await createLab({ listeners: 2 });
  try {
    // Many short connections: widen the client's port range and reuse TIME_WAIT ports (this
    // namespace only), so the baseline is not limited by port exhaustion.
    execFileSync('ip', ['netns', 'exec', lab.cli, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1']);
    const [connPort, bulkPort] = lab.tcpPorts;
    const yaml = benchPolicyYaml(connPort);

    // Load (parse + validate the YAML) is the policy stage's cost, reported apart; compile +
    // apply is render + `nft -f -` in the namespace (which replaces the table atomically).
    const t0 = performance.now();
    const loaded = loadPolicyText(yaml, 'bench.yaml');
    const loadMs = performance.now() - t0;
    const options = { proxy: { host: '192.0.2.1', port: 3128 }, dns: { host: '192.0.2.1', port: 53 } };
    let script = '';
    const compileRuns = [];
    for (let i = 0; i < ROUNDS; i++) {
      const a = performance.now();
      script = renderRuleset(loaded.policies, options);
      const b = performance.now();
      await applyRuleset(script, { netns: lab.cli });
      compileRuns.push({ render: b - a, apply: performance.now() - b });
    }
    // The bulk port is allowed only through the host map: an element for the last hostname
    // endpoint, so those packets miss the direct map and hit the host map (the slower allow path).
    const endpoints = kernelEndpoints(loaded.policies);
    const owner = counterName(endpoints[endpoints.length - 1].id);
    const elements = `{ ${HOST_TARGET} . ${connPort} timeout 600s : "${owner}", ${HOST_TARGET} . ${bulkPort} timeout 600s : "${owner}" }`;

    // Alternate baseline and fenced rounds so drift on a shared machine hits both alike.
    await load(lab, ['connect', DIRECT_TARGET, connPort, 1, CONCURRENCY]);
    const runs = { baseConn: [], baseBulk: [], ctConn: [], conn: [], hostConn: [], bulk: [] };
    for (let round = 0; round < ROUNDS; round++) {
      await deleteRuleset({ netns: lab.cli });
      runs.baseConn.push(await connRate(lab, DIRECT_TARGET, connPort));
      runs.baseBulk.push(await throughput(lab, DIRECT_TARGET, bulkPort));
      await applyRuleset(CONNTRACK_ONLY, { netns: lab.cli });
      runs.ctConn.push(await connRate(lab, DIRECT_TARGET, connPort));
      await applyRuleset(script, { netns: lab.cli });
      await lab.nft(['add', 'element', 'inet', 'portcullis', hostMapName(4), elements]);
      runs.conn.push(await connRate(lab, DIRECT_TARGET, connPort));
      runs.hostConn.push(await connRate(lab, HOST_TARGET, connPort));
      runs.bulk.push(await throughput(lab, HOST_TARGET, bulkPort));
    }
    await deleteRuleset({ netns: lab.cli });

    const m = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
    const compileMs = median(compileRuns.map((r) => r.render + r.apply));
    const list = (v, d = 0) => v.map((x) => fmt(x, d)).join(', ');
    console.log(`policy: ${fmt(CIDR_ENDPOINTS)} CIDR endpoints + ${fmt(HOST_ENDPOINTS)} hostname endpoints; script ${fmt(script.length / 1024)} KiB; medians of ${ROUNDS} alternating rounds`);
    console.log(`load (YAML parse + validate, policy stage): ${fmt(loadMs)} ms`);
    console.log(`compile + apply (render + nft -f): ${fmt(compileMs)} ms (render ${list(compileRuns.map((r) => r.render))} ms; nft -f ${list(compileRuns.map((r) => r.apply))} ms) — ${verdict(compileMs < 1000)} (< 1 s)`);
    console.log(`TCP connections/s, baseline (no ruleset): ${fmt(m.baseConn)} (${list(runs.baseConn)})`);
    console.log(`TCP connections/s, conntrack only (reference): ${fmt(m.ctConn)} (${list(runs.ctConn)})  ratio ${fmt(m.ctConn / m.baseConn, 2)}`);
    console.log(`TCP connections/s, ruleset, CIDR endpoint: ${fmt(m.conn)} (${list(runs.conn)})  ratio ${fmt(m.conn / m.baseConn, 2)} — ${verdict(m.conn / m.baseConn >= 0.9)} (≥ 0.9); against conntrack only ${fmt(m.conn / m.ctConn, 2)}`);
    console.log(`TCP connections/s, ruleset, last of 1,000 host sets: ${fmt(m.hostConn)} (${list(runs.hostConn)})  ratio ${fmt(m.hostConn / m.baseConn, 2)} — ${verdict(m.hostConn / m.baseConn >= 0.9)} (≥ 0.9)`);
    console.log(`bulk throughput, baseline: ${fmt(m.baseBulk, 2)} Gbit/s (${list(runs.baseBulk, 2)})`);
    console.log(`bulk throughput, ruleset (host-set path): ${fmt(m.bulk, 2)} Gbit/s (${list(runs.bulk, 2)})  ratio ${fmt(m.bulk / m.baseBulk, 2)} — ${verdict(m.bulk / m.baseBulk >= 0.9)} (≥ 0.9)`);
  } finally {
    await lab.close();
  }
}

await main();
