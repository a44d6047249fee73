// Fuzzing inspected connections: 20,000 malformed HTTP/2 frame sequences and 20,000 HTTP/1.1
// heads (each with a known defect, many with a second request smuggled behind the first) fed to
// the inspected-connection handlers (fixtures/inspect/fuzz-harness.ts). The policy allows only
// /ok/**: nothing the upstream receives may be anything else (no request gets past its
// decision), the process survives every sequence, and a valid request is served afterwards.
// proxy-inspect.test.ts sends a sample of the same cases the whole way (CONNECT, TLS, the CLI).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { frame, h1Case, h2Case, PREFACE, prng, requestBlock } from './fixtures/inspect/fuzz-cases.js';
import { FUZZ_HOST, startFuzzHarness, type FuzzHarness } from './fixtures/inspect/fuzz-harness.js';
import { inBatches } from './support/batches.js';

const SEQUENCES = Number(process.env.FUZZ_SEQUENCES ?? 20_000);
const CONCURRENCY = 48;
let harness: FuzzHarness;

beforeAll(async () => {
  harness = await startFuzzHarness();
}, 60_000);

afterAll(async () => {
  await harness?.close();
});

/** `make` for each of `count` items, CONCURRENCY in flight. */
function pool<T>(count: number, make: (i: number) => Promise<T>): Promise<T[]> {
  return inBatches(count, CONCURRENCY, make);
}

describe('fuzzing inspected connections', () => {
  it(`${SEQUENCES} malformed HTTP/1.1 heads: nothing but allowed /ok/ requests reaches the upstream, and the proxy goes on`, async () => {
    const authority = `${FUZZ_HOST}:${harness.upstreamPort}`;
    const rand = prng(0x1f1);
    const cases = Array.from({ length: SEQUENCES }, (_, i) => h1Case(rand, authority, i));
    const answers = await pool(SEQUENCES, (i) => harness.send('h1', cases[i]!));
    expect(harness.forwarded.filter((p) => !p.startsWith('/ok/'))).toEqual([]);
    const statuses = new Map<string, number>();
    for (const a of answers) {
      const s = a.toString('latin1', 9, 12) || 'none';
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    // The defects are refused (400 and kin) far more often than anything is forwarded.
    expect(statuses.get('400') ?? 0).toBeGreaterThan(SEQUENCES / 4);
    const ok = await harness.send('h1', Buffer.from(`GET /ok/after HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`));
    expect(ok.toString()).toMatch(/^HTTP\/1\.1 200/);
    expect(harness.forwarded).toContain('/ok/after');
    console.log(`h1 fuzz: ${harness.forwarded.length} forwarded (all /ok/), answers by status ${JSON.stringify(Object.fromEntries(statuses))}`);
  }, 600_000);

  it(`${SEQUENCES} malformed HTTP/2 frame sequences: nothing but allowed /ok/ requests reaches the upstream, and the proxy goes on`, async () => {
    const before = harness.forwarded.length;
    const authority = `${FUZZ_HOST}:${harness.upstreamPort}`;
    const rand = prng(0x2f2);
    const cases = Array.from({ length: SEQUENCES }, (_, i) => h2Case(rand, authority, i));
    await pool(SEQUENCES, (i) => harness.send('h2', cases[i]!, 400));
    const forwarded = harness.forwarded.slice(before);
    expect(forwarded.filter((p) => !p.startsWith('/ok/'))).toEqual([]);
    const valid = Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, requestBlock('/ok/h2-after', authority)), frame(7, 0, 0, Buffer.alloc(8))]);
    await harness.send('h2', valid);
    expect(harness.forwarded).toContain('/ok/h2-after');
    console.log(`h2 fuzz: ${forwarded.length} forwarded (all /ok/)`);
  }, 600_000);
});
