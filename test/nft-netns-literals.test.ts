// IP-literal hosts in special ranges meet real packets: the fence in a client namespace must
// refuse what the proxy's SSRF check would refuse to dial (cloud metadata, private, documentation
// addresses without allowed_ips naming them), and open the same kind of address where an
// endpoint's allowed_ips names it. The server namespace answers on every address used here (the
// special ones exist only between the lab's two namespaces), so the baseline connects to all of
// them and a refusal can only come from the fence.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { applyRuleset, deleteRuleset, nftAvailable } from '../src/nft/apply.js';
import { renderRuleset } from '../src/nft/render.js';
import { loadPolicyText, type LoadedPolicy } from '../src/policy/load.js';
import { checkAddresses } from '../src/proxy/ssrf.js';
import { expectOpen, expectRefused } from './support/fence-probes.js';
import { createLab, type Lab, type Tuple } from '../testdata/nft/lab.mjs';

let lab: Lab;
let loaded: LoadedPolicy;
let port: number;

const METADATA = '169.254.169.254';
const closed = (): Tuple[] => [
  { address: METADATA, port }, // link-local (cloud metadata): never nameable
  { address: '10.0.0.5', port }, // private, no allowed_ips
  { address: '203.0.113.9', port }, // documentation, no allowed_ips
];
const named = (): Tuple[] => [
  { address: '10.0.0.6', port }, // private, named by its allowed_ips
  { address: '203.0.113.10', port }, // documentation, named by its allowed_ips
];

beforeAll(async () => {
  const available = await nftAvailable();
  if (!available.ok) throw new Error(available.why);
  lab = await createLab({ listeners: 1, extraV4Ranges: [`${METADATA}/32`, '10.0.0.0/24'] });
  port = lab.tcpPorts[0]!;
  loaded = loadPolicyText(
    `version: 1
network_policies:
  literals:
    endpoints:
      - { host: ${METADATA}, port: ${port} }
      - { host: 10.0.0.5, port: ${port} }
      - { host: 203.0.113.9, port: ${port} }
      - { host: 10.0.0.6, port: ${port}, allowed_ips: ["10.0.0.0/24"] }
      - { host: 203.0.113.10, port: ${port}, allowed_ips: ["203.0.113.10"] }
`,
    'literals.yaml',
  );
});

afterAll(async () => {
  await lab?.close();
});

describe('IP-literal hosts in special ranges, through the fence', () => {
  it('without the ruleset every address connects (the refusals below are the fence\'s)', async () => {
    await expectOpen(lab, [...closed(), ...named()]);
  });

  it('the fence refuses a literal the proxy would not dial, and opens one its allowed_ips name', async () => {
    await applyRuleset(renderRuleset(loaded.policies), { netns: lab.cli });
    try {
      await expectRefused(lab, closed());
      await expectOpen(lab, named());
    } finally {
      await deleteRuleset({ netns: lab.cli });
    }
  });

  it('the kernel opens exactly what the engine allows and the SSRF check lets the proxy dial', async () => {
    const engine = await PolicyEngine.create(loaded);
    const tuples = [...closed(), ...named()];
    const proxyDials = tuples.map((t) => {
      const decision = engine.decide(buildDecisionInput({ host: t.address, port: t.port, binary: null }));
      // Every literal here is allowed by the policy: only the SSRF rule tells them apart.
      expect(decision.allow, t.address).toBe(true);
      return checkAddresses([t.address], new Set(), decision.explicit_ips === true).ok;
    });
    expect(proxyDials).toEqual([false, false, false, true, true]);
    await applyRuleset(renderRuleset(loaded.policies), { netns: lab.cli });
    try {
      const verdicts = await lab.probe(tuples, { timeoutMs: 1000 });
      expect(verdicts.map((v) => v === 'open')).toEqual(proxyDials);
    } finally {
      await deleteRuleset({ netns: lab.cli });
    }
  });
});
