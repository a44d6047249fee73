// nft fence benchmark: TCP connections per second and bulk throughput between two network
// namespaces, without a ruleset (baseline) and with the compiled ruleset of a policy with
// 10,000 CIDR endpoints and 1,000 hostname endpoints; and the compile + apply time of that
// policy. Targets: ratio ≥ 0.9 against the baseline of the same run; compile + apply < 1 s.
// The CIDR endpoints are /24s, so the kernel hashes them and leaves their flows untracked; a
// second policy of 10,000 CIDR endpoints spread over 17 prefix lengths (/16 to /32), which the
// kernel searches by port, once per TCP connection (at its SYN), is measured beside it (see
// src/nft/direct.ts). Hostname endpoints' TCP connections, and those searched ones, go on
// untracked through the live sets of src/nft/live.ts.
//
// Method. Five configurations: no ruleset (twice: the second baseline shows how far two runs
// of the same configuration drift apart in one round, the noise floor of every ratio);
// connection tracking alone (the floor any tracked flow pays); the compiled rulesets (hashed
// /24s, and the searched spread of lengths), their host maps filled as the DNS proxy would.
// There are as many labs (client + server namespace), each with one load generator running,
// so runs can be short. Identical labs still differ by a few percent in speed, so the
// configurations move between them: in phase p, configuration i is in lab (i + p) mod 5, and
// over the five phases every configuration runs in every lab for as many rounds (a Latin
// square), so no ratio carries one lab's speed. Between phases the rulesets are swapped and the
// kernel left a moment to free the replaced ones. Every round runs every configuration once,
// for a short slice, in an order rotated from round to round; each ratio is taken within a
// round, so load from other processes on a shared machine falls on both sides of it alike, and
// the median over many rounds is reported with its interquartile range.
//
// Run: npm run build && node bench/nft.bench.mjs   (root; creates and removes its namespaces)
// Env: NFT_BENCH_ROUNDS (connection-rate rounds, default 40), NFT_BENCH_SLICE_MS (per run,
// default 500), NFT_BENCH_CONCURRENCY (default 16), NFT_BENCH_BULK_ROUNDS (default 20),
// NFT_BENCH_BYTES (per bulk run, default 512 MiB).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { applyRuleset, deleteRuleset, nftAvailable } from '../dist/nft/apply.js';
import { counterName, hostMapName, kernelEndpoints } from '../dist/nft/names.js';
import { renderRuleset } from '../dist/nft/render.js';
import { loadPolicyText } from '../dist/policy/load.js';
import { createLab } from '../testdata/nft/lab.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOAD = path.join(HERE, '../testdata/nft/load.mjs');
const ROUNDS = Number(process.env.NFT_BENCH_ROUNDS ?? 40);
const SLICE_MS = Number(process.env.NFT_BENCH_SLICE_MS ?? 500);
const CONCURRENCY = Number(process.env.NFT_BENCH_CONCURRENCY ?? 16);
const BULK_ROUNDS = Number(process.env.NFT_BENCH_BULK_ROUNDS ?? 20);
const BYTES = Number(process.env.NFT_BENCH_BYTES ?? 512 * 1024 ** 2);
const COMPILE_ROUNDS = 5;
const CIDR_ENDPOINTS = 10_000;
const HOST_ENDPOINTS = 1_000;
/** Addresses per hostname endpoint in the host map, as if each name had been answered. */
const ADDRESSES_PER_NAME = 10;
const DIRECT_TARGET = '198.51.100.10';
const HOST_TARGET = '203.0.113.10';
// Connection tracking alone (what "established/related accepted" needs): separates the cost of
// conntrack from the cost of the fence's own rules (untracked flows can cost less).
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

/**
 * 10,000 CIDR endpoints (100 policies × 100) and 1,000 hostname endpoints (10 × 100), no
 * binaries. Every CIDR endpoint allows the benchmark's port (and one of 1,000 others), so the
 * direct allows of that port hold all 10,000 blocks: the worst case for a search by port.
 * `spread`: the blocks' prefix lengths run from /16 to /32 instead of all /24.
 */
function benchPolicyYaml(ports, { spread = false } = {}) {
  const [port, bulkPort] = ports;
  const lines = ['version: 1', 'network_policies:'];
  for (let p = 0; p < CIDR_ENDPOINTS / 100; p++) {
    lines.push(`  cidr-${String(p).padStart(3, '0')}:`, '    endpoints:');
    for (let e = 0; e < 100; e++) {
      const i = p * 100 + e;
      const block = spread ? `10.${i >> 8}.${i & 255}.${(i * 7) & 255}/${16 + (i % 17)}` : `10.${i >> 8}.${i & 255}.0/24`;
      lines.push(`      - { allowed_ips: ["${block}"], ports: [${port}, ${1024 + (i % 1000)}] }`);
    }
  }
  // The benchmark's own destination: one CIDR endpoint among the others, for both runs.
  lines[lines.length - 1] = `      - { allowed_ips: ["198.51.100.0/24"], ports: [443, ${port}, ${bulkPort}] }`;
  for (let p = 0; p < HOST_ENDPOINTS / 100; p++) {
    lines.push(`  names-${String(p).padStart(2, '0')}:`, '    endpoints:');
    for (let e = 0; e < 100; e++) lines.push(`      - { host: "h${p * 100 + e}.bench.example", ports: [443, ${port}] }`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The host map as the DNS proxy would leave it: ADDRESSES_PER_NAME addresses (100.64.0.0/10,
 * never dialled) for every hostname endpoint on both its ports, and the benchmark's destination
 * for the last one.
 */
function hostMapScript(hostEndpoints, ports) {
  const elements = [];
  for (const [i, ke] of hostEndpoints.entries()) {
    for (let a = 0; a < ADDRESSES_PER_NAME; a++) {
      const n = i * ADDRESSES_PER_NAME + a;
      for (const port of [443, ports[0]]) elements.push(`100.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255} . ${port} timeout 3600s : "${counterName(ke.id)}"`);
    }
  }
  const last = counterName(hostEndpoints[hostEndpoints.length - 1].id);
  for (const port of ports) elements.push(`${HOST_TARGET} . ${port} timeout 3600s : "${last}"`);
  return `add element inet portcullis ${hostMapName(4)} { ${elements.join(', ')} }\n`;
}

/** A lab with its load generator (testdata/nft/load.mjs) running in the client namespace. */
async function newLab() {
  const lab = await createLab({ listeners: 2 });
  // Many short connections: widen the client's port range and reuse TIME_WAIT ports (this
  // namespace only), so the baseline is not limited by port exhaustion.
  execFileSync('ip', ['netns', 'exec', lab.cli, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1']);
  const child = lab.spawnIn(lab.cli, [process.execPath, LOAD]);
  const answers = readline.createInterface({ input: child.stdout });
  const waiting = [];
  answers.on('line', (line) => waiting.shift()?.(JSON.parse(line)));
  /** Sends one command; resolves with the generator's answer. */
  lab.load = (...args) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load generator: no answer to "${args.join(' ')}" within 120 s`)), 120_000);
      waiting.push((answer) => {
        clearTimeout(timer);
        if (answer.error) reject(new Error(`load generator: ${answer.error}`));
        else resolve(answer);
      });
      child.stdin.write(`${args.join(' ')}\n`);
    });
  return lab;
}

async function connRate(lab, address, milliseconds = SLICE_MS) {
  const r = await lab.load('connect', address, lab.tcpPorts[0], milliseconds, CONCURRENCY);
  if (r.failed > 0) throw new Error(`${r.failed} connections to ${address}:${lab.tcpPorts[0]} failed`);
  return r.connections / r.seconds;
}

async function throughput(lab, address) {
  const r = await lab.load('bulk', address, lab.tcpPorts[1], BYTES);
  if (r.bytes !== BYTES) throw new Error(`bulk transfer delivered ${r.bytes} of ${BYTES} bytes`);
  return (r.bytes * 8) / r.seconds / 1e9;
}

const quantile = (values, q) => [...values].sort((a, b) => a - b)[Math.floor(q * (values.length - 1))];
const median = (values) => quantile(values, 0.5);
const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const verdict = (ok) => (ok ? 'meets target' : 'MISSES target');
/** Round i's measurements in an order rotated by i, so no configuration always runs first. */
const rotated = (items, i) => items.map((_, k) => items[(k + i) % items.length]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const RENDER_OPTIONS = { proxy: { host: '192.0.2.1', port: 3128 }, dns: { host: '192.0.2.1', port: 53 } };
/** What each lab may hold: no ruleset (twice), conntrack alone, the two compiled rulesets. */
const CONFIGURATIONS = ['none', 'none again', 'conntrack only', 'hashed', 'searched'];
/** Pause after swapping rulesets: freeing a large one keeps the kernel busy for a while. */
const SETTLE_MS = 2000;

/** Each lab's script of each compiled configuration, rendered once (loading the YAML takes over a second). */
const scripts = new Map();

/** Puts a configuration in a lab's client namespace, replacing what it held. */
async function applyConfiguration(config, lab, hostEndpoints) {
  if (config === 'none' || config === 'none again') return deleteRuleset({ netns: lab.cli });
  if (config === 'conntrack only') return applyRuleset(CONNTRACK_ONLY, { netns: lab.cli });
  const key = `${config} ${lab.cli}`;
  if (!scripts.has(key)) {
    const policy = loadPolicyText(benchPolicyYaml(lab.tcpPorts, { spread: config === 'searched' }), `bench-${config}.yaml`);
    scripts.set(key, renderRuleset(policy.policies, RENDER_OPTIONS));
  }
  await applyRuleset(scripts.get(key), { netns: lab.cli });
  // The host map as the DNS proxy would leave it.
  await lab.nft(['-f', '-'], hostMapScript(hostEndpoints, lab.tcpPorts));
}

async function main() {
  const available = await nftAvailable();
  if (!available.ok) {
    console.log(`nft benchmark skipped: ${available.why}`);
    return;
  }
  const labs = [];
  try {
    for (let i = 0; i < CONFIGURATIONS.length; i++) labs.push(await newLab());

    // Load (parse + validate the YAML) is the policy stage's cost, reported apart; compile +
    // apply is render + `nft -f -` in the namespace (which replaces the table atomically).
    const t0 = performance.now();
    const loaded = loadPolicyText(benchPolicyYaml(labs[0].tcpPorts), 'bench.yaml');
    const loadMs = performance.now() - t0;
    let script = '';
    const compileRuns = [];
    for (let i = 0; i < COMPILE_ROUNDS; i++) {
      const a = performance.now();
      script = renderRuleset(loaded.policies, RENDER_OPTIONS);
      const b = performance.now();
      await applyRuleset(script, { netns: labs[0].cli });
      compileRuns.push({ render: b - a, apply: performance.now() - b });
    }
    const hostEndpoints = kernelEndpoints(loaded.policies).filter((ke) => ke.endpoint.host !== null);

    const conn = [
      { key: 'base', config: 'none', address: DIRECT_TARGET },
      { key: 'again', config: 'none again', address: DIRECT_TARGET },
      { key: 'ct', config: 'conntrack only', address: DIRECT_TARGET },
      { key: 'cidr', config: 'hashed', address: DIRECT_TARGET },
      { key: 'host', config: 'hashed', address: HOST_TARGET },
      { key: 'spreadCidr', config: 'searched', address: DIRECT_TARGET },
      { key: 'spreadHost', config: 'searched', address: HOST_TARGET },
    ];
    const bulk = [
      { key: 'base', config: 'none', address: DIRECT_TARGET },
      { key: 'ct', config: 'conntrack only', address: DIRECT_TARGET },
      { key: 'cidr', config: 'hashed', address: DIRECT_TARGET },
      { key: 'host', config: 'hashed', address: HOST_TARGET },
    ];
    const runs = { conn: Object.fromEntries(conn.map((c) => [c.key, []])), bulk: Object.fromEntries(bulk.map((c) => [c.key, []])) };
    const phases = CONFIGURATIONS.length;
    let round = 0;
    for (let phase = 0; phase < phases; phase++) {
      // Phase p puts configuration i in lab (i + p) mod n: over the phases, every configuration
      // runs in every lab for as many rounds.
      const labOf = new Map(CONFIGURATIONS.map((config, i) => [config, labs[(i + phase) % labs.length]]));
      for (const [config, lab] of labOf) await applyConfiguration(config, lab, hostEndpoints);
      await sleep(SETTLE_MS);
      // Warm-up: JIT, listeners' accept queues, conntrack tables.
      for (const c of conn) await connRate(labOf.get(c.config), c.address, 500);
      for (let r = 0; r < Math.ceil(ROUNDS / phases); r++, round++) {
        for (const c of rotated(conn, round)) runs.conn[c.key].push(await connRate(labOf.get(c.config), c.address));
      }
      for (let r = 0; r < Math.ceil(BULK_ROUNDS / phases); r++, round++) {
        for (const c of rotated(bulk, round)) runs.bulk[c.key].push(await throughput(labOf.get(c.config), c.address));
      }
    }

    /** Per-round ratios of a to b: their median and interquartile range. */
    const ratio = (a, b) => {
      const each = a.map((x, i) => x / b[i]);
      return { median: median(each), list: `IQR ${fmt(quantile(each, 0.25), 2)}–${fmt(quantile(each, 0.75), 2)}` };
    };
    const list = (v, d = 0) => v.map((x) => fmt(x, d)).join(', ');
    const spread = (v, d = 0) => `${fmt(quantile(v, 0.25), d)}–${fmt(quantile(v, 0.75), d)}`;
    const compileMs = median(compileRuns.map((r) => r.render + r.apply));
    const c = runs.conn;
    const b = runs.bulk;
    const again = ratio(c.again, c.base);
    const ct = ratio(c.ct, c.base);
    const cidr = ratio(c.cidr, c.base);
    const host = ratio(c.host, c.base);
    const spreadCidr = ratio(c.spreadCidr, c.base);
    const spreadHost = ratio(c.spreadHost, c.base);
    const bulkCt = ratio(b.ct, b.base);
    const bulkCidr = ratio(b.cidr, b.base);
    const bulkRatio = ratio(b.host, b.base);
    console.log(`policy: ${fmt(CIDR_ENDPOINTS)} CIDR endpoints + ${fmt(HOST_ENDPOINTS)} hostname endpoints; script ${fmt(script.length / 1024)} KiB; host map ${fmt(hostEndpoints.length * ADDRESSES_PER_NAME * 2 + 2)} elements`);
    console.log(`connection rate: ${runs.conn.base.length} rounds of ${SLICE_MS} ms runs, ${CONCURRENCY} connections in flight; bulk: ${runs.bulk.base.length} rounds of ${fmt(BYTES / 1024 ** 2)} MiB; each over ${CONFIGURATIONS.length} phases that move every configuration to another lab`);
    console.log('ratios: median of the per-round ratios [interquartile range]; rates: median (interquartile range)');
    console.log(`load (YAML parse + validate, policy stage): ${fmt(loadMs)} ms`);
    console.log(`compile + apply (render + nft -f): ${fmt(compileMs)} ms (render ${list(compileRuns.map((r) => r.render))} ms; nft -f ${list(compileRuns.map((r) => r.apply))} ms) — ${verdict(compileMs < 1000)} (< 1 s)`);
    console.log(`TCP connections/s, baseline (no ruleset): ${fmt(median(c.base))} (${spread(c.base)})`);
    console.log(`TCP connections/s, second baseline (noise floor): ${fmt(median(c.again))} (${spread(c.again)})  ratio ${fmt(again.median, 2)} [${again.list}]`);
    console.log(`TCP connections/s, conntrack only (reference): ${fmt(median(c.ct))} (${spread(c.ct)})  ratio ${fmt(ct.median, 2)} [${ct.list}]`);
    console.log(`TCP connections/s, ruleset, CIDR endpoint: ${fmt(median(c.cidr))} (${spread(c.cidr)})  ratio ${fmt(cidr.median, 2)} [${cidr.list}] — ${verdict(cidr.median >= 0.9)} (≥ 0.9); against conntrack only ${fmt(ratio(c.cidr, c.ct).median, 2)}`);
    console.log(`TCP connections/s, ruleset, hostname endpoint (host map): ${fmt(median(c.host))} (${spread(c.host)})  ratio ${fmt(host.median, 2)} [${host.list}] — ${verdict(host.median >= 0.9)} (≥ 0.9); against conntrack only ${fmt(ratio(c.host, c.ct).median, 2)}`);
    console.log(`TCP connections/s, ruleset of /16–/32 blocks (searched at the SYN), CIDR endpoint: ${fmt(median(c.spreadCidr))} (${spread(c.spreadCidr)})  ratio ${fmt(spreadCidr.median, 2)} [${spreadCidr.list}]; against conntrack only ${fmt(ratio(c.spreadCidr, c.ct).median, 2)}`);
    console.log(`TCP connections/s, ruleset of /16–/32 blocks (searched at the SYN), hostname endpoint: ${fmt(median(c.spreadHost))} (${spread(c.spreadHost)})  ratio ${fmt(spreadHost.median, 2)} [${spreadHost.list}]; against conntrack only ${fmt(ratio(c.spreadHost, c.ct).median, 2)}`);
    console.log(`bulk throughput, baseline: ${fmt(median(b.base), 2)} Gbit/s (${spread(b.base, 2)})`);
    console.log(`bulk throughput, conntrack only (reference): ${fmt(median(b.ct), 2)} Gbit/s (${spread(b.ct, 2)})  ratio ${fmt(bulkCt.median, 2)} [${bulkCt.list}]`);
    console.log(`bulk throughput, ruleset, CIDR endpoint (untracked): ${fmt(median(b.cidr), 2)} Gbit/s (${spread(b.cidr, 2)})  ratio ${fmt(bulkCidr.median, 2)} [${bulkCidr.list}] — ${verdict(bulkCidr.median >= 0.9)} (≥ 0.9)`);
    console.log(`bulk throughput, ruleset (host-map path): ${fmt(median(b.host), 2)} Gbit/s (${spread(b.host, 2)})  ratio ${fmt(bulkRatio.median, 2)} [${bulkRatio.list}] — ${verdict(bulkRatio.median >= 0.9)} (≥ 0.9); against conntrack only ${fmt(ratio(b.host, b.ct).median, 2)}`);
  } finally {
    for (const lab of labs) await lab.close();
  }
}

await main();
