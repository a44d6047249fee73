// Credential swap benchmark (pure, in-process, no network): the time the swap adds to one
// request (headers and query; a request carrying a placeholder, and, as the baseline in the same
// run, the same request without one) and the body substitution throughput (256 KiB bodies with
// and without placeholders). Targets: swap p50 <= 0.05 ms; body >= 200 MiB/s.
// Needs `npm run build`.
import { Secret } from '../dist/credentials/secret.js';
import { CredentialStore } from '../dist/credentials/store.js';
import { swapBody, swapRequest } from '../dist/credentials/swap.js';

const BATCH = 100; // calls per sample: one call is below the timer's resolution
const SAMPLES = 2_000;
const BODY_RUNS = 400;
const PHASE_BUDGET_MS = 15_000;
const TARGET_SWAP_P50_MS = 0.05;
const TARGET_BODY_MIBS = 200;

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const store = new CredentialStore([
  { name: 'github', source: { kind: 'env', variable: 'GITHUB_TOKEN' }, value: new Secret('ghp_' + 'a'.repeat(36)) },
  { name: 'openai', source: { kind: 'env', variable: 'OPENAI_API_KEY' }, value: new Secret('sk-' + 'b'.repeat(48)) },
  { name: 'internal', source: { kind: 'file', path: '/run/secrets/internal' }, value: new Secret('c'.repeat(64)) },
]);
const [github] = store.placeholderVariables().map((v) => v.placeholder);
const table = store.table;

function request(authorization) {
  return {
    target: '/repos/portcullis/portcullis/pulls?state=open&per_page=100',
    headers: [
      { name: 'Host', value: 'api.github.com' },
      { name: 'User-Agent', value: 'curl/7.88.1' },
      { name: 'Accept', value: 'application/vnd.github+json' },
      { name: 'Accept-Encoding', value: 'gzip, deflate, br' },
      { name: 'Authorization', value: authorization },
      { name: 'X-GitHub-Api-Version', value: '2022-11-28' },
      { name: 'Content-Type', value: 'application/json' },
      { name: 'Cookie', value: 'session=0123456789abcdef; theme=dark; lang=en' },
      { name: 'Traceparent', value: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
      { name: 'Accept-Language', value: 'en-GB,en;q=0.9' },
    ],
  };
}

/** ms per call, from SAMPLES timed batches. */
function perCall(fn) {
  const out = [];
  const deadline = Date.now() + PHASE_BUDGET_MS;
  for (let i = 0; i < SAMPLES && Date.now() < deadline; i++) {
    const start = process.hrtime.bigint();
    for (let j = 0; j < BATCH; j++) fn();
    out.push(Number(process.hrtime.bigint() - start) / 1e6 / BATCH);
  }
  return out;
}

const withPlaceholder = request(`Bearer ${github}`);
const without = request('Bearer not-a-placeholder-0123456789');
// Check before timing: the swap must really happen (and not happen) in what is measured.
const check = swapRequest(withPlaceholder, ['github'], table);
if (!check.ok || check.swapped[0] !== 'github') throw new Error('the benchmark request was not swapped');
if (swapRequest(without, ['github'], table).swapped.length !== 0) throw new Error('the baseline request was swapped');

for (let i = 0; i < 20_000; i++) (swapRequest(withPlaceholder, ['github'], table), swapRequest(without, ['github'], table));
const swapped = perCall(() => swapRequest(withPlaceholder, ['github'], table));
const baseline = perCall(() => swapRequest(without, ['github'], table));

// Bodies: 256 KiB of JSON-ish text, with 4 placeholders spread through it, and without.
const KIB = 1024;
const filler = '{"k":"' + 'v'.repeat(250) + '"},';
let text = '';
while (text.length < 256 * KIB - 4 * 200) text += filler;
const quarter = Math.floor(text.length / 4);
const bodyWith = Buffer.from([0, 1, 2, 3].map((q) => text.slice(q * quarter, (q + 1) * quarter) + `"t":"${github}",`).join(''), 'latin1');
const bodyWithout = Buffer.from(text, 'latin1');
const bodyCheck = swapBody(bodyWith, ['github'], table);
if (!bodyCheck.ok || bodyCheck.body.includes(github)) throw new Error('the benchmark body was not swapped');

function throughput(body) {
  for (let i = 0; i < 50; i++) swapBody(body, ['github'], table);
  const start = process.hrtime.bigint();
  let runs = 0;
  const deadline = Date.now() + PHASE_BUDGET_MS;
  for (; runs < BODY_RUNS && Date.now() < deadline; runs++) swapBody(body, ['github'], table);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return (body.length * runs) / (1024 * 1024) / seconds;
}
const bodyMibs = throughput(bodyWith);
const scanMibs = throughput(bodyWithout);

const f = (ms) => ms.toFixed(5);
const p50 = pct(swapped, 50);
console.log(`credential swap, headers and query (n = ${swapped.length} samples of ${BATCH} calls; ms per request)`);
console.log(`  with a placeholder     p50 ${f(p50)}  p99 ${f(pct(swapped, 99))}`);
console.log(`  baseline (none)        p50 ${f(pct(baseline, 50))}  p99 ${f(pct(baseline, 99))}`);
console.log(`  swap added p50 ${f(p50)} ms (target <= ${TARGET_SWAP_P50_MS}) ${p50 <= TARGET_SWAP_P50_MS ? 'OK' : 'MISSED'}; over the baseline ${f(p50 - pct(baseline, 50))} ms`);
console.log(`body substitution, ${(bodyWith.length / KIB).toFixed(0)} KiB with 4 placeholders: ${bodyMibs.toFixed(0)} MiB/s (target >= ${TARGET_BODY_MIBS}) ${bodyMibs >= TARGET_BODY_MIBS ? 'OK' : 'MISSED'}`);
console.log(`body baseline, ${(bodyWithout.length / KIB).toFixed(0)} KiB without placeholders (scan only): ${scanMibs.toFixed(0)} MiB/s`);
