// What tests of the nft fence expect of probes from the lab's client namespace.
import { expect } from 'vitest';
import type { Lab, Tuple } from '../../testdata/nft/lab.mjs';

/** What a fast refusal looks like to a client: never a timeout. */
export const REFUSED = ['ECONNREFUSED', 'EHOSTUNREACH', 'ECONNRESET', 'EACCES', 'EPERM'];

/** Every tuple is refused at once (within 1 s). */
export async function expectRefused(lab: Lab, tuples: Tuple[]): Promise<void> {
  const results = await lab.probe(tuples, { timeoutMs: 1000 });
  results.forEach((r, i) => expect(REFUSED, `${JSON.stringify(tuples[i])} → ${r}`).toContain(r));
}

/** Every tuple connects. */
export async function expectOpen(lab: Lab, tuples: Tuple[]): Promise<void> {
  const results = await lab.probe(tuples, { timeoutMs: 3000 });
  results.forEach((r, i) => expect(r, JSON.stringify(tuples[i])).toBe('open'));
}
