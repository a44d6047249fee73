// TLS inspection benchmark: the cost of the first leaf for a new host (mint + its TLS context,
// through the leaf cache as the proxy will call it) against a cache hit, with one leaf key per
// minter (what portcullis does) and with a new key per leaf (for comparison), and the parts of a
// miss (signing the certificate; building the context). Target: first leaf <= 5 ms at p50.
// Needs `npm run build`. In-process only: no network.
import { createSecureContext } from 'node:tls';
import { createAuthority } from '../dist/tls/ca.js';
import { LeafCache } from '../dist/tls/leaf-cache.js';
import { LeafMinter } from '../dist/tls/leaf.js';

const WARMUP = 200;
const MISSES = 2_000; // new hosts per configuration
const HITS = 20_000;
const PHASE_BUDGET_MS = 20_000; // no phase runs longer than this, whatever the counts say
const TARGET_FIRST_LEAF_P50_MS = 5;

const pct = (xs, p) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const f = (ms) => (ms < 0.1 ? ms.toFixed(4) : ms.toFixed(3));

/** Times `count` calls of `fn(i)` (awaited), stopping early at the phase budget; ms each. */
async function timed(count, fn) {
  const out = [];
  const deadline = Date.now() + PHASE_BUDGET_MS;
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const start = process.hrtime.bigint();
    await fn(i);
    out.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return out;
}

const ca = await createAuthority();
let run = 0;

async function missesAndHits(options) {
  const minter = await LeafMinter.create(ca, options);
  const cache = new LeafCache(minter, { maxEntries: WARMUP + MISSES + 10 });
  const tag = run++;
  await timed(WARMUP, (i) => cache.get(`warm${i}.r${tag}.example`));
  const misses = await timed(MISSES, (i) => cache.get(`host${i}.r${tag}.example`));
  const hosts = Math.min(misses.length, 100);
  const hits = await timed(HITS, (i) => cache.get(`host${i % hosts}.r${tag}.example`));
  if (cache.minted !== WARMUP + misses.length) throw new Error(`expected ${WARMUP + misses.length} mintings, saw ${cache.minted}`);
  return { misses, hits, minter };
}

const shared = await missesAndHits({});
const perLeaf = await missesAndHits({ keyPerLeaf: true });

// The parts of a miss, with the shared key.
const mintOnly = await timed(MISSES, (i) => shared.minter.mint(`part${i}.example`));
const leaf = await shared.minter.mint('context.example');
const contextOnly = await timed(MISSES, () => createSecureContext({ key: leaf.keyPem, cert: leaf.chainPem }));

console.log(`TLS leaves (n = ${shared.misses.length} new hosts, ${shared.hits.length} hits per configuration; ms)`);
console.log('configuration                 | first leaf p50   p99 | cache hit p50    p99 | first ÷ hit (p50)');
for (const [label, r] of [['one leaf key per minter', shared], ['a new key per leaf', perLeaf]]) {
  const ratio = pct(r.misses, 50) / pct(r.hits, 50);
  console.log(
    `${label.padEnd(29)} | ${f(pct(r.misses, 50)).padStart(14)} ${f(pct(r.misses, 99)).padStart(5)} | ${f(pct(r.hits, 50)).padStart(13)} ${f(pct(r.hits, 99)).padStart(6)} | ×${ratio.toFixed(0)}`,
  );
}
console.log(`parts of a first leaf (one key per minter): certificate p50 ${f(pct(mintOnly, 50))} p99 ${f(pct(mintOnly, 99))}; TLS context p50 ${f(pct(contextOnly, 50))} p99 ${f(pct(contextOnly, 99))}`);
console.log(`a new key per leaf costs ×${(pct(perLeaf.misses, 50) / pct(shared.misses, 50)).toFixed(2)} at p50`);
const p50 = pct(shared.misses, 50);
console.log(`target first leaf p50 <= ${TARGET_FIRST_LEAF_P50_MS} ms: ${f(p50)} ms (${p50 <= TARGET_FIRST_LEAF_P50_MS ? 'met' : 'NOT met'})`);
