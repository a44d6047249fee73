// Builds the parity vectors from the table, with expectations from the reference model.
import { buildDecisionInput } from '../../src/engine/input.js';
import type { Policy } from '../../src/policy/types.js';
import { referenceDecision } from './reference-decision.js';
import { BINARIES, EDGE_CASES, HOSTS, PORTS, type Vector } from './vector-table.js';

export function generateVectors(policies: Policy[]): Vector[] {
  const vectors: Vector[] = [];
  const expect = (facts: Vector['facts']): Vector['expected'] => referenceDecision(policies, buildDecisionInput(facts));
  for (const host of HOSTS) {
    for (const { binary, ancestors } of BINARIES) {
      for (const port of PORTS) {
        const facts = { host, port, binary, ancestors };
        vectors.push({ name: `${host}:${port} ${binary ?? '<unresolved>'}${ancestors.length ? ` <- ${ancestors.join(' <- ')}` : ''}`, facts, expected: expect(facts) });
      }
    }
  }
  for (const edge of EDGE_CASES) vectors.push({ ...edge, expected: expect(edge.facts) });
  return vectors;
}
