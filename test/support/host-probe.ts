// Asks the Rego, through its decision only, whether host patterns match hosts: a probe policy
// gives each pattern a policy of its own (no binaries, so any caller) on a port of its own, so
// the decision for (host, that port) allows exactly when the pattern matches the host — the
// index lookup included. Answers come from the wasm engine or from one `opa eval` per batch;
// the TypeScript side is src/policy/host-match.ts on the host the Rego is given.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDecisionInput } from '../../src/engine/input.js';
import type { PolicyEngine } from '../../src/engine/engine.js';
import { opaBinary } from '../../src/engine/opa-cli.js';
import { hostMatches } from '../../src/policy/host-match.js';
import { loadPolicyText, type LoadedPolicy } from '../../src/policy/load.js';
import type { Decision, DecisionInput } from '../../src/policy/types.js';

const FIRST_PORT = 1000;

/** One question: does pattern number `pattern` of the probe match `host` (as a request names it)? */
export interface HostCase {
  pattern: number;
  host: string;
}

export interface HostProbe {
  policy: LoadedPolicy;
  /** Canonical patterns, as the loader stored them. */
  patterns: string[];
}

/** The probe policy for `patterns` (as written in a policy file; each must load). */
export function hostProbe(patterns: string[]): HostProbe {
  const doc = {
    version: 1,
    network_policies: Object.fromEntries(patterns.map((host, i) => [`p${i}`, { endpoints: [{ host, port: FIRST_PORT + i }] }])),
  };
  const policy = loadPolicyText(JSON.stringify(doc), 'host-probe.yaml');
  return { policy, patterns: patterns.map((_, i) => policy.data.policies[`p${i}`]!.endpoints[0]!.host!) };
}

function probeInput(c: HostCase): DecisionInput {
  return buildDecisionInput({ host: c.host, port: FIRST_PORT + c.pattern, binary: '/usr/bin/probe' });
}

/** The TypeScript matcher's answer, on the host exactly as the Rego receives it. */
export function tsAnswer(probe: HostProbe, c: HostCase): boolean {
  return hostMatches(probe.patterns[c.pattern]!, probeInput(c).network.host);
}

/** The wasm engine's answer; the engine must hold `probe.policy`. */
export function wasmAnswer(engine: PolicyEngine, c: HostCase): boolean {
  return engine.decide(probeInput(c)).allow;
}

/** The answers of the real `opa eval` on the built-in Rego, one process for all cases. */
export function opaAnswers(probe: HostProbe, cases: HostCase[]): boolean[] {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-host-probe-'));
  try {
    writeFileSync(join(dir, 'data.json'), JSON.stringify({ portcullis: probe.policy.data }));
    writeFileSync(join(dir, 'input.json'), JSON.stringify({ inputs: cases.map(probeInput) }));
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
    return (JSON.parse(out).result[0].expressions[0].value as Decision[]).map((d) => d.allow);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
