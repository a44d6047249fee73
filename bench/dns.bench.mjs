// DNS proxy benchmark: queries per second and added latency of the portcullis DNS proxy,
// against querying the upstream test server directly and against Debian's dnsmasq forwarding
// the same queries to the same upstream, measured in the same run.
//
// Processes: the upstream (src/sim/dns-server), each forwarder and this load generator run as
// separate processes on loopback. Scenarios through the proxy:
//   - "no kernel sets": a name only a policy with binaries covers (forwarded, nothing fed);
//   - "kernel sets, fresh": a name an any-binary policy covers; its addresses go into nft host
//     maps in a namespace this benchmark creates, and repeated answers find them still fresh;
//   - "kernel sets, cold": a new name and address for every query: every answer waits for an
//     nft write (coalesced), the worst case.
// dnsmasq runs exactly as `--no-daemon --no-resolv --no-hosts --server=… --port=…
// --listen-address=127.0.0.1 --bind-interfaces` (its default cache is on: repeated names are
// answered from its cache, while portcullis forwards every query).
// Needs `npm run build`, root (netns, nft) and /usr/sbin/dnsmasq. Bounded in count and time.
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const LOAD_MS = 2_000; // per throughput phase
const ROUNDS = 5;
const LOAD_MAX_QUERIES = 400_000;
const WINDOW = 128; // queries in flight
const LATENCY_QUERIES = 3_000; // one at a time
const COLD_NAMES = 3_000;
const TARGET_QPS = 20_000;
const TARGET_ADDED_P50_MS = 0.3;
const DNSMASQ = '/usr/sbin/dnsmasq';

const children = new Set();
let netns = null;
function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  if (netns) {
    try {
      execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    netns = null;
  }
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

/** Starts `node --input-type=module -e CODE`; resolves with the first line it prints (JSON). */
function startNode(code, what) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 20 s`)), 20_000);
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ child, ...JSON.parse(line) });
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
  });
}

const coldName = (i) => `n${i}.cold.example.com`;
const coldNames = Array.from({ length: COLD_NAMES }, (_, i) => coldName(i));

async function startUpstream() {
  return startNode(
    `import { startDnsServer } from ${JSON.stringify(`${DIST}sim/dns-server.js`)};
     const records = {
       'tool.example.com': { A: ['203.0.113.10'], ttl: 300 },
       'api.example.com': { A: ['203.0.113.7'], AAAA: ['2001:db8::7'], ttl: 300 },
     };
     // The cold names: one address each, all different, in the benchmarking range (named by
     // the endpoint's allowed_ips; the addresses only go into a set in the benchmark's namespace).
     for (let i = 0; i < ${COLD_NAMES}; i++) records['n' + i + '.cold.example.com'] = { A: ['198.18.' + (i >> 8) + '.' + (i & 255)], ttl: 300 };
     const s = await startDnsServer({ records });
     s.queries.push = () => 0; // keep memory flat under load
     console.log(JSON.stringify({ port: s.port }));`,
    'the upstream DNS server',
  );
}

/**
 * A minimal upstream for measuring the proxy's own ceiling: it answers every query with one A
 * record by patching the query's bytes (no decoding), so it costs far less than the test server.
 */
async function startCannedUpstream() {
  return startNode(
    `import dgram from 'node:dgram';
     const s = dgram.createSocket('udp4');
     const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 203, 0, 113, 10]);
     s.on('message', (q, r) => {
       if (q.length < 17) return;
       // Header: response, recursion available; one answer; no additional records (OPT dropped).
       let end = 12;
       while (end < q.length && q[end] !== 0) end += q[end] + 1;
       end += 5;
       if (end > q.length) return;
       const out = Buffer.concat([q.subarray(0, end), answer]);
       out[2] |= 0x80; out[3] = 0x80; out.writeUInt16BE(1, 6); out.writeUInt16BE(0, 10);
       s.send(out, r.port, r.address);
     });
     s.bind(0, '127.0.0.1', () => console.log(JSON.stringify({ port: s.address().port })));`,
    'the canned upstream',
  );
}

const POLICY = `version: 1
network_policies:
  any:
    endpoints:
      - { host: api.example.com, port: 443 }
      - { host: "*.cold.example.com", port: 443, allowed_ips: ["198.18.0.0/15"] }
  tools:
    binaries: [{ path: /usr/bin/git }]
    endpoints:
      - { host: tool.example.com, port: 443 }
`;

async function startProxy(upstreamPort, ns) {
  return startNode(
    `import { startDnsProxy } from ${JSON.stringify(`${DIST}dns/proxy.js`)};
     import { NftSetFeeder } from ${JSON.stringify(`${DIST}nft/set-feeder.js`)};
     import { loadPolicyText } from ${JSON.stringify(`${DIST}policy/load.js`)};
     const policies = loadPolicyText(${JSON.stringify(POLICY)}, 'bench.yaml').policies;
     const feeder = ${ns ? `new NftSetFeeder({ netns: ${JSON.stringify(ns)} })` : 'undefined'};
     const p = await startDnsProxy({ listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: ${upstreamPort} }, policies, feeder });
     console.log(JSON.stringify({ port: p.address.port }));`,
    'the DNS proxy',
  );
}

async function startDnsmasq(upstreamPort) {
  const port = await freeUdpPort();
  const child = spawn(
    DNSMASQ,
    ['--no-daemon', '--no-resolv', '--no-hosts', `--server=127.0.0.1#${upstreamPort}`, `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Ready when it answers.
  for (let i = 0; i < 100; i++) {
    if ((await oneQuery(port, 'tool.example.com', 'A', 300)) !== null) return { child, port };
    if (child.exitCode !== null) break;
  }
  throw new Error(`dnsmasq did not start: ${stderr.trim()}`);
}

function freeUdpPort() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function oneQuery(port, name, type, timeoutMs) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(null);
    }, timeoutMs);
    s.once('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, '127.0.0.1');
  });
}

/** Pre-encoded queries (id patched per send). */
const encoded = (names, type = 'A') => names.map((name) => dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }));

/**
 * Throughput: WINDOW queries in flight over several sockets for LOAD_MS (or until
 * `messages` run out when `once` is set). Lost queries (no answer in 1 s) are counted.
 */
async function throughput(port, messages, { once = false } = {}) {
  const sockets = await Promise.all(
    Array.from({ length: 4 }, () => new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1', () => resolve(s));
    })),
  );
  let sent = 0;
  let answered = 0;
  let lost = 0;
  const rcodes = new Map();
  const inFlight = new Map(); // id → sent at
  let nextId = 0;
  const started = performance.now();
  const deadline = started + (once ? 60_000 : LOAD_MS);
  return new Promise((resolve) => {
    const finish = () => {
      clearInterval(sweeper);
      for (const s of sockets) s.close();
      const seconds = (performance.now() - started) / 1000;
      resolve({ qps: answered / seconds, answered, lost, seconds, rcodes: Object.fromEntries(rcodes) });
    };
    const sendOne = () => {
      const done = once ? sent >= messages.length : performance.now() >= deadline || sent >= LOAD_MAX_QUERIES;
      if (done) {
        if (inFlight.size === 0) finish();
        return;
      }
      let id = nextId;
      do id = (id + 1) & 0xffff;
      while (inFlight.has(id));
      nextId = id;
      const m = Buffer.from(messages[sent % messages.length]);
      m.writeUInt16BE(id, 0);
      inFlight.set(id, performance.now());
      sockets[sent % sockets.length].send(m, port, '127.0.0.1');
      sent++;
    };
    for (const s of sockets) {
      s.on('message', (m) => {
        const id = m.readUInt16BE(0);
        if (!inFlight.delete(id)) return;
        answered++;
        const rcode = m[3] & 0x0f;
        rcodes.set(rcode, (rcodes.get(rcode) ?? 0) + 1);
        sendOne();
      });
    }
    const sweeper = setInterval(() => {
      const now = performance.now();
      for (const [id, at] of inFlight) {
        if (now - at > 1000) {
          inFlight.delete(id);
          lost++;
          sendOne();
        }
      }
      if (inFlight.size === 0) finish();
    }, 100);
    for (let i = 0; i < WINDOW; i++) sendOne();
  });
}

/**
 * Latency: one query at a time, taking turns between the targets (so that load from other
 * processes on the machine hits all of them alike); p50 and p99 in ms per target.
 */
async function latencies(targets) {
  const s = dgram.createSocket('udp4');
  await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
  const times = targets.map(() => []);
  const deadline = performance.now() + 30_000;
  for (let i = 0; i < LATENCY_QUERIES && performance.now() < deadline; i++) {
    for (const [t, { port, message }] of targets.entries()) {
      const m = Buffer.from(message);
      m.writeUInt16BE(i & 0xffff, 0);
      const t0 = performance.now();
      const ok = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 1000);
        s.once('message', () => {
          clearTimeout(timer);
          resolve(true);
        });
        s.send(m, port, '127.0.0.1');
      });
      if (ok) times[t].push(performance.now() - t0);
    }
  }
  s.close();
  return times.map((list) => {
    list.sort((a, b) => a - b);
    const at = (q) => list[Math.min(list.length - 1, Math.floor(q * list.length))];
    return { p50: at(0.5), p99: at(0.99), n: list.length };
  });
}

function createNetns() {
  netns = `pcdnsb-${process.pid}`;
  execFileSync('ip', ['netns', 'add', netns]);
  return netns;
}

async function applyRuleset(ns) {
  const { renderRuleset } = await import(`${DIST}nft/render.js`);
  const { loadPolicyText } = await import(`${DIST}policy/load.js`);
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: renderRuleset(loadPolicyText(POLICY, 'bench.yaml').policies) });
}

const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main() {
  if (!existsSync(DNSMASQ)) throw new Error(`${DNSMASQ} is not installed`);
  const upstream = await startUpstream();
  const ns = createNetns();
  await applyRuleset(ns);
  const plain = await startProxy(upstream.port, undefined);
  const fed = await startProxy(upstream.port, ns);
  const dnsmasq = await startDnsmasq(upstream.port);
  const canned = await startCannedUpstream();
  const overCanned = await startProxy(canned.port, undefined);

  const tool = encoded(['tool.example.com']);
  const api = encoded(['api.example.com']);
  const cold = encoded(coldNames);

  // Warm-up (JIT, sockets; the first kernel-set write for api.example.com).
  for (const port of [upstream.port, plain.port, fed.port, dnsmasq.port, canned.port, overCanned.port]) await throughput(port, tool, { once: true });
  await throughput(fed.port, api, { once: true });

  // Throughput in alternating rounds: every scenario once per round, so load from other
  // processes on the machine falls on all of them alike; the median round is reported.
  const scenarios = [
    { label: 'upstream directly', port: upstream.port, messages: tool },
    { label: 'portcullis, no kernel sets', port: plain.port, messages: tool },
    { label: 'portcullis, kernel sets, fresh', port: fed.port, messages: api },
    { label: 'dnsmasq (default cache)', port: dnsmasq.port, messages: tool },
    { label: 'canned upstream directly (ceiling check)', port: canned.port, messages: tool },
    { label: 'portcullis over the canned upstream', port: overCanned.port, messages: tool },
  ];
  for (const sc of scenarios) {
    sc.rounds = [];
    sc.message = sc.messages[0];
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const sc of scenarios) sc.rounds.push(await throughput(sc.port, sc.messages));
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const sc of scenarios) {
    sc.qps = median(sc.rounds.map((r) => r.qps));
    sc.lost = sc.rounds.reduce((n, r) => n + r.lost, 0);
  }
  const [direct, proxyPlain, proxyFresh, masq, cannedDirect, proxyCanned] = scenarios;
  /** Median over rounds of a scenario's qps divided by another's in the same round. */
  const ratio = (a, b) => median(a.rounds.map((r, i) => r.qps / b.rounds[i].qps));
  const timed = [direct, proxyPlain, proxyFresh, masq];
  for (const [i, l] of (await latencies(timed)).entries()) Object.assign(timed[i], l);
  const coldRun = await throughput(fed.port, cold, { once: true });
  const proxyCold = { label: `portcullis, kernel sets, cold (${COLD_NAMES} new names)`, qps: coldRun.qps, lost: coldRun.lost };

  // Elements of the IPv4 host map counted on the wildcard endpoint (policy "any", endpoint 1).
  const setSize = execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'map', 'inet', 'portcullis', 'hosts4']).toString().split(' : "allow_0_1"').length - 1;

  console.log(`DNS proxy, UDP, ${WINDOW} queries in flight; throughput: median of ${ROUNDS} alternating rounds of ${LOAD_MS / 1000} s; latency: ${LATENCY_QUERIES} sequential queries per target, taking turns`);
  console.log('scenario                                              qps    lost   p50 ms   p99 ms');
  for (const r of [...scenarios, proxyCold]) {
    const p50 = r.p50 === undefined ? '     -' : fmt(r.p50, 3).padStart(6);
    const p99 = r.p99 === undefined ? '     -' : fmt(r.p99, 3).padStart(6);
    console.log(`${r.label.padEnd(48)} ${fmt(r.qps).padStart(9)} ${String(r.lost).padStart(6)}   ${p50}   ${p99}`);
  }
  const added = (r) => r.p50 - direct.p50;
  console.log('');
  console.log(`added p50 latency over the upstream: no kernel sets ${fmt(added(proxyPlain), 3)} ms, kernel sets fresh ${fmt(added(proxyFresh), 3)} ms (target ≤ ${TARGET_ADDED_P50_MS} ms)`);
  console.log(`qps vs upstream directly (same round): no kernel sets ${fmt(ratio(proxyPlain, direct), 2)}x, kernel sets fresh ${fmt(ratio(proxyFresh, direct), 2)}x`);
  console.log(`qps vs dnsmasq (same round): no kernel sets ${fmt(ratio(proxyPlain, masq), 2)}x, kernel sets fresh ${fmt(ratio(proxyFresh, masq), 2)}x; p50 vs dnsmasq +${fmt(proxyPlain.p50 - masq.p50, 3)} ms`);
  console.log(`the proxy over an upstream that costs almost nothing: ${fmt(proxyCanned.qps)} qps (${fmt(ratio(proxyCanned, cannedDirect), 2)}x that upstream directly)`);
  console.log(`cold kernel-set answers (every answer waits for an nft write, coalesced): ${fmt(proxyCold.qps)} qps, ${setSize} of ${COLD_NAMES} addresses in the IPv4 host map afterwards`);
  const verdict = (ok) => (ok ? 'met' : 'NOT met');
  console.log(
    `target ≥ ${fmt(TARGET_QPS)} qps: no kernel sets ${verdict(proxyPlain.qps >= TARGET_QPS)}, kernel sets fresh ${verdict(proxyFresh.qps >= TARGET_QPS)}; ` +
      `p50 added ≤ ${TARGET_ADDED_P50_MS} ms: ${verdict(added(proxyPlain) <= TARGET_ADDED_P50_MS)} / ${verdict(added(proxyFresh) <= TARGET_ADDED_P50_MS)}`,
  );
}

try {
  await main();
} finally {
  cleanup();
}
process.exit(0);
