// The one TypeScript host matcher (src/policy/host-match.ts) against the Rego: the semantics of
// DESIGN.md case by case, then patterns and hosts from fast-check — wildcards inside labels,
// `**`, punycode and Unicode spellings, empty labels, case and trailing dots — answered by the
// matcher, the wasm engine and the real `opa eval`, which must all agree.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../src/engine/engine.js';
import { compileHostPattern, hostMatches, wildcardSuffix } from '../src/policy/host-match.js';
import { parseHostPattern } from '../src/policy/host-pattern.js';
import { hostProbe, opaAnswers, tsAnswer, wasmAnswer, type HostCase, type HostProbe } from './support/host-probe.js';

/** [pattern as written, host as requested, whether it matches] — each a line of DESIGN.md. */
const SEMANTICS: Array<[string, string, boolean]> = [
  ['api.github.com', 'api.github.com', true],
  ['api.github.com', 'API.GitHub.COM.', true],
  ['api.github.com', 'x.api.github.com', false],
  ['*.example.com', 'api.example.com', true],
  ['*.example.com', 'example.com', false],
  ['*.example.com', 'a.b.example.com', false],
  ['*.example.com', '.example.com', false],
  ['*.example.com', 'a..example.com', false],
  ['api-*.example.com', 'api-eu.example.com', true],
  ['api-*.example.com', 'api-.example.com', true],
  ['api-*.example.com', 'apix1.example.com', false],
  ['api-*.example.com', 'api-x.eu.example.com', false],
  ['*-1.example.com', 'x-1.example.com', true],
  ['a.*.example.com', 'a.b.example.com', true],
  ['a.*.example.com', 'a..example.com', false],
  ['**.example.com', 'a.example.com', true],
  ['**.example.com', 'a.b.c.example.com', true],
  ['**.example.com', 'example.com', false],
  ['**.example.com', '.example.com', false],
  ['**.example.com', 'a..example.com', false],
  ['**.example.com', 'notexample.com', false],
  ['**.a*.example.com', 'x.y.ab.example.com', true],
  ['**.a*.example.com', 'ab.example.com', false],
  ['*.bücher.example', 'a.BÜCHER.example', true],
  ['*.bücher.example', 'a.xn--bcher-kva.example', true],
  ['*.xn--bcher-kva.example', 'a.bücher.example', true],
  ['bücher.example', 'xn--bcher-kva.example', true],
];

describe('the matcher on the lines of the semantics', () => {
  it.each(SEMANTICS)('%s against %s: %s', (pattern, host, expected) => {
    const probe = hostProbe([pattern]);
    expect(tsAnswer(probe, { pattern: 0, host })).toBe(expected);
  });

  it('files a wildcard pattern under the literal labels after its last wildcard', () => {
    expect(wildcardSuffix('*.example.com')).toBe('example.com');
    expect(wildcardSuffix('**.a-*.b.example.com')).toBe('b.example.com');
    expect(wildcardSuffix('api-*.x.example.net')).toBe('x.example.net');
  });

  it('compares exact patterns as strings and compiles wildcards once', () => {
    expect(hostMatches('a.example.com', 'a.example.com')).toBe(true);
    expect(hostMatches('a.example.com', 'a.example.com.')).toBe(false);
    const matches = compileHostPattern('*.example.com');
    expect(['a.example.com', 'b.example.com', '.example.com'].map(matches)).toEqual([true, true, false]);
  });
});

// --- generated patterns and hosts --------------------------------------------------------

const LITERALS = ['a', 'api', 'x-1', 'api-eu', 'b2', 'bücher', 'xn--bcher-kva'];
const WILDCARDS = ['*', 'api-*', '*-1', 'a*i', '*i*', 'x*', '*a'];
const SUFFIXES = ['example.com', 'example.org', 'bücher.example', 'xn--bcher-kva.example'];
/** What a `*` is replaced by in a generated instance: the empty run included. */
const RUNS = ['', 'a', 'pi', 'x-1', '-', 'ü'];

const patternArb = fc
  .tuple(
    fc.oneof(fc.constant('**'), fc.constantFrom(...WILDCARDS), fc.constantFrom(...LITERALS)),
    fc.array(fc.constantFrom(...LITERALS, ...WILDCARDS), { maxLength: 2 }),
    fc.constantFrom(...SUFFIXES),
  )
  .map(([first, middle, suffix]) => [first, ...middle, suffix].join('.'))
  .filter((pattern) => parseHostPattern(pattern).ok);

/** A host built from a pattern: each `*` and `**` filled in, sometimes with nothing. */
function instanceOf(pattern: string): fc.Arbitrary<string> {
  const labels = pattern.split('.').map((label, i) => {
    if (label === '**' && i === 0) return fc.array(fc.constantFrom(...LITERALS, ''), { minLength: 1, maxLength: 3 }).map((ls) => ls.join('.'));
    const parts = label.split('*');
    return fc.array(fc.constantFrom(...RUNS), { minLength: parts.length - 1, maxLength: parts.length - 1 }).map((runs) =>
      parts.reduce((text, part, j) => text + part + (runs[j] ?? ''), ''),
    );
  });
  return fc.tuple(...labels).map((ls) => ls.join('.'));
}

const unrelatedHost = fc
  .tuple(fc.array(fc.constantFrom(...LITERALS, '', 'API', '_sip'), { maxLength: 4 }), fc.constantFrom(...SUFFIXES, 'com', 'example'))
  .map(([ls, suffix]) => [...ls, suffix].join('.'));

/** How a client might spell it: case, a trailing dot or two. */
const spelled = (host: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.tuple(host, fc.boolean(), fc.constantFrom('', '', '.', '..')).map(([h, upper, dots]) => `${upper ? h.toUpperCase() : h}${dots}`);

/** A few patterns and hosts; every host is asked against every pattern. */
const probeArb = fc
  .array(patternArb, { minLength: 1, maxLength: 5 })
  .chain((patterns) =>
    fc.tuple(fc.constant(patterns), fc.array(spelled(fc.oneof(unrelatedHost, fc.constantFrom(...patterns).chain(instanceOf))), { minLength: 1, maxLength: 10 })),
  );

function casesOf(patterns: string[], hosts: string[], offset = 0): HostCase[] {
  return hosts.flatMap((host) => patterns.map((_, i) => ({ pattern: offset + i, host })));
}

describe('the matcher agrees with the Rego on generated patterns and hosts', () => {
  let engine: PolicyEngine;
  beforeAll(async () => {
    engine = await PolicyEngine.create(hostProbe(['a.example.com']).policy);
  });

  it('through the wasm engine', () => {
    const seen = { matched: 0, unmatched: 0, emptyLabel: 0 };
    fc.assert(
      fc.property(probeArb, ([patterns, hosts]) => {
        const probe = hostProbe(patterns);
        engine.replace(probe.policy);
        for (const c of casesOf(patterns, hosts)) {
          const ts = tsAnswer(probe, c);
          expect(wasmAnswer(engine, c), `${probe.patterns[c.pattern]} against ${c.host}`).toBe(ts);
          seen[ts ? 'matched' : 'unmatched']++;
          if (/(^|\.)\.|\.\.$/.test(c.host)) seen.emptyLabel++;
        }
      }),
      { numRuns: 300, seed: 20261205 },
    );
    // Both answers, and hosts with empty labels, were exercised.
    expect(seen.matched).toBeGreaterThan(300);
    expect(seen.unmatched).toBeGreaterThan(300);
    expect(seen.emptyLabel).toBeGreaterThan(100);
  });

  it('through opa eval', () => {
    const runs = fc.sample(probeArb, { numRuns: 80, seed: 20261205 });
    const patterns: string[] = [];
    const cases: HostCase[] = [];
    for (const [ps, hosts] of runs) {
      cases.push(...casesOf(ps, hosts, patterns.length));
      patterns.push(...ps);
    }
    const probe: HostProbe = hostProbe(patterns);
    const opa = opaAnswers(probe, cases);
    expect(opa).toHaveLength(cases.length);
    cases.forEach((c, i) => expect(opa[i], `${probe.patterns[c.pattern]} against ${c.host}`).toBe(tsAnswer(probe, c)));
    expect(opa.filter(Boolean).length).toBeGreaterThan(50);
  });

  it('on the lines of the semantics, through both', () => {
    const probe = hostProbe(SEMANTICS.map(([pattern]) => pattern));
    const cases = SEMANTICS.map(([, host], i) => ({ pattern: i, host }));
    engine.replace(probe.policy);
    const expected = SEMANTICS.map(([, , matches]) => matches);
    expect(cases.map((c) => wasmAnswer(engine, c))).toEqual(expected);
    expect(opaAnswers(probe, cases)).toEqual(expected);
  });
});
