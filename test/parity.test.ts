// Parity: one file of decision vectors, replayed through the wasm engine and through the real
// `opa eval` on the same Rego and data; both must agree with the expected decision, which comes
// from an independent reference model of the semantics. The vectors' host cases are replayed
// on their own too: every host against every host pattern of the fixture, answered by the one
// TypeScript host matcher (src/policy/host-match.ts), the wasm engine and `opa eval`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { opaBinary } from '../src/engine/opa-cli.js';
import { loadPolicyFileSync, type LoadedPolicy } from '../src/policy/load.js';
import type { Decision } from '../src/policy/types.js';
import { hostProbe, opaAnswers, tsAnswer, wasmAnswer, type HostCase } from './support/host-probe.js';
import { generateVectors } from './support/vectors.js';
import type { Vector } from './support/vector-table.js';

const VECTORS = 'testdata/vectors.json';
const policy: LoadedPolicy = loadPolicyFileSync('testdata/policies/fixture.yaml');

if (process.env.UPDATE_VECTORS) writeFileSync(VECTORS, `${JSON.stringify(generateVectors(policy.policies), null, 1)}\n`);
const vectors = JSON.parse(readFileSync(VECTORS, 'utf8')) as Vector[];

function agrees(actual: Decision, vector: Vector): void {
  const label = `${vector.name}: ${actual.reason}`;
  expect({ allow: actual.allow, decision: actual.decision }, label).toEqual({ allow: vector.expected.allow, decision: vector.expected.decision });
  if (vector.expected.allow) {
    expect(actual.policy, label).toBe(vector.expected.policy);
    expect(actual.inspect, label).toBe(vector.expected.inspect);
    const credentials = vector.expected.credentials;
    expect({ bound: actual.credentials, cleartext: actual.cleartext_credentials, body: actual.body_credentials }, label).toEqual(credentials ?? { bound: undefined, cleartext: undefined, body: undefined });
  } else expect(actual.credentials, label).toBeUndefined();
  if (vector.reason_contains) expect(actual.reason, label).toContain(vector.reason_contains);
}

describe('decision vectors', () => {
  it('has at least 150 vectors, most generated, and covers every outcome', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(150);
    const outcomes = new Set(vectors.map((v) => v.expected.decision));
    expect([...outcomes].sort()).toEqual(['allow', 'audit', 'deny']);
    expect(vectors.filter((v) => v.expected.allow).length).toBeGreaterThan(30);
    const inspected = vectors.filter((v) => v.expected.inspect === true);
    expect(inspected.length).toBeGreaterThan(10);
    expect(inspected.some((v) => v.facts.method === undefined && v.expected.policy === 'internal-api')).toBe(true);
    expect(vectors.filter((v) => v.expected.inspect === false).length).toBeGreaterThan(30);
  });

  it('expectations are those of the reference model (the file has not drifted)', () => {
    expect(vectors.map((v) => v.expected)).toEqual(generateVectors(policy.policies).map((v) => v.expected));
  });

  describe('through the wasm engine', () => {
    let engine: PolicyEngine;
    beforeAll(async () => {
      engine = await PolicyEngine.create(policy);
    });
    it('agrees on every vector', () => {
      for (const vector of vectors) agrees(engine.decide(buildDecisionInput(vector.facts)), vector);
    });
  });

  describe('through opa eval', () => {
    it('agrees on every vector', () => {
      const dir = mkdtempSync(join(tmpdir(), 'portcullis-parity-'));
      try {
        writeFileSync(join(dir, 'data.json'), JSON.stringify({ portcullis: policy.data }));
        writeFileSync(join(dir, 'input.json'), JSON.stringify({ inputs: vectors.map((v) => buildDecisionInput(v.facts)) }));
        const out = execFileSync(
          opaBinary(),
          [
            'eval', '--format', 'json',
            '-d', 'policies/portcullis/authz.rego',
            '-d', join(dir, 'data.json'),
            '-i', join(dir, 'input.json'),
            '[d | some x in input.inputs; d := data.portcullis.authz.decision with input as x]',
          ],
          { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
        );
        const decisions = JSON.parse(out).result[0].expressions[0].value as Decision[];
        expect(decisions).toHaveLength(vectors.length);
        vectors.forEach((vector, i) => agrees(decisions[i]!, vector));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('host cases of the vectors', () => {
  const patterns = [...new Set(policy.policies.flatMap((p) => p.endpoints.flatMap((e) => (e.host === null ? [] : [e.host]))))].sort();
  const hosts = [...new Set(vectors.map((v) => v.facts.host))].sort();
  const probe = hostProbe(patterns);
  const cases: HostCase[] = hosts.flatMap((host) => patterns.map((_, pattern) => ({ pattern, host })));
  const matcher = cases.map((c) => tsAnswer(probe, c));
  const label = (c: HostCase): string => `${probe.patterns[c.pattern]} against ${c.host}`;

  it('cover every host pattern of the fixture, matching and not', () => {
    expect(patterns.filter((p) => p.includes('*')).length).toBeGreaterThanOrEqual(3);
    expect(matcher.filter(Boolean).length).toBeGreaterThanOrEqual(patterns.length);
    expect(matcher.filter((m) => !m).length).toBeGreaterThan(cases.length / 2);
  });

  it('the matcher agrees with the wasm engine', async () => {
    const engine = await PolicyEngine.create(probe.policy);
    cases.forEach((c, i) => expect(wasmAnswer(engine, c), label(c)).toBe(matcher[i]));
  });

  it('the matcher agrees with opa eval', () => {
    const opa = opaAnswers(probe, cases);
    cases.forEach((c, i) => expect(opa[i], label(c)).toBe(matcher[i]));
  });
});
