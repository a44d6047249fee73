// Differential test: the two planes of one policy must agree. For random policies and random
// (address, port) tuples, the verdict of real TCP connections through the compiled nft ruleset
// equals the engine's decision for an any-binary request to the same IP literal. Rounds
// alternate between policies whose direct allows the kernel hashes (few prefix lengths; their
// flows untracked) and policies whose allows it searches by port (many lengths; tracked).
//
// The kernel allows what the engine allows with decision "allow". An endpoint with
// `protocol: rest` and `enforcement: audit` makes the engine answer "audit" (allowed, logged) for
// an opaque request; the kernel sends such traffic through the proxy, where it is audited, so
// it counts as a kernel deny here. So does an allow with `inspect` (the proxy terminates its TLS)
// unless an endpoint the kernel may enforce allows the tuple as well: the kernel's verdict is the
// engine's for the same policy without its inspected endpoints.
//
// And the kernel opens only what the proxy would dial: the universe is documentation addresses,
// a special class, so an allow is the kernel's only where an allowing endpoint names the address
// in its allowed_ips (the SSRF rule, src/net `unreachableClass`, over the decision's
// `explicit_ips`); an IP-literal host without them stays closed.
//
// Reproduce a failure with NFT_DIFF_SEED=<seed printed in the failure>.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from './support/prng.js';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { parseAddress } from '../src/net/address.js';
import { unreachableClass } from '../src/net/classes.js';
import { applyRuleset, nftAvailable } from '../src/nft/apply.js';
import { formatAddress, parseRange, type AddressRange } from '../src/nft/intervals.js';
import { directElements, planKernel } from '../src/nft/plan.js';
import { renderRuleset } from '../src/nft/render.js';
import { buildPolicyData } from '../src/policy/data-document.js';
import { loadPolicyText } from '../src/policy/load.js';
import { REFUSED } from './support/fence-probes.js';
import { createLab, type Lab } from '../testdata/nft/lab.mjs';


const ROUNDS = 5;
const TUPLES_PER_ROUND = 150;
const SEED = Number(process.env.NFT_DIFF_SEED ?? Math.floor(Math.random() * 2 ** 31));


const MANY_LENGTHS = { 4: [23, 24, 25, 26, 27, 28, 29, 30, 31, 32], 6: [48, 62, 63, 64, 120, 124, 126, 127, 128] };
// With IP literals (/32, /128) these make at most MAX_HASHED_LENGTHS lengths per family.
const FEW_LENGTHS = { 4: [24, 30], 6: [62, 126] };
/** Four disjoint IPv4 blocks of four lengths. */
const SPREAD_LENGTHS = ['198.51.100.0/26', '198.51.100.64/27', '198.51.100.96/28', '198.51.100.112/29'];

// The server namespace answers on all of these (see testdata/nft/lab.mjs).
const UNIVERSE = ['198.51.100.0/24', '203.0.113.0/24', '2001:db8:5::/48'].map(parseRange);
const inUniverse = (r: AddressRange, x: bigint): boolean => UNIVERSE.some((u) => u.family === r.family && u.start <= x && x <= u.end);

class Generator {
  readonly random: () => number;
  constructor(seed: number) {
    this.random = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  /** An address in the universe, near the low end of a few sub-blocks so prefixes overlap often. */
  address(): { text: string; family: 4 | 6; value: bigint } {
    const u = this.pick(UNIVERSE);
    const value = u.family === 4 ? u.start + BigInt(this.int(256)) : u.start + (BigInt(this.int(4)) << 64n) + BigInt(this.int(256));
    return { text: formatAddress(value, u.family), family: u.family, value };
  }
  /** Prefix lengths to draw from: many (the kernel searches by port) or few (it hashes them). */
  lengths: Record<4 | 6, number[]> = MANY_LENGTHS;
  cidr(): string {
    const a = this.address();
    return `${a.text}/${this.pick(this.lengths[a.family])}`;
  }
}

interface Target {
  text: string;
  ports: number[];
}

function generatePolicy(g: Generator, ports: number[]): { yaml: string; cidrs: Target[]; literals: Target[] } {
  const cidrs: Target[] = [];
  const literals: Target[] = [];
  const lines = ['version: 1', 'network_policies:'];
  const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
  const count = 2 + g.int(4);
  for (let p = 0; p < count; p++) {
    lines.push(`  ${names[p]}:`, '    endpoints:');
    for (let e = 0, n = 1 + g.int(4); e < n; e++) {
      const portList = [...new Set([g.pick(ports), ...(g.chance(0.3) ? [g.pick(ports)] : [])])];
      const ips: string[] = g.chance(0.5) ? Array.from({ length: 1 + g.int(3) }, () => g.cidr()) : [];
      // The first policy always has a kernel-enforceable endpoint, so allows are never rare.
      const kind = p === 0 && e === 0 ? 'hostless' : g.pick(['hostless', 'hostless', 'literal', 'literal', 'name', 'wildcard', 'rest'] as const);
      const fields = [`ports: [${portList.join(', ')}]`];
      if (kind === 'hostless') {
        // Many-length rounds: the first endpoint (first in the kernel order, so none of its
        // blocks is left out) gives IPv4 more lengths than are hashed.
        const spread = p === 0 && e === 0 && g.lengths === MANY_LENGTHS;
        const list = spread ? SPREAD_LENGTHS : ips.length > 0 ? ips : [g.cidr()];
        fields.push(`allowed_ips: [${list.map((c) => `"${c}"`).join(', ')}]`);
        cidrs.push(...list.map((text) => ({ text, ports: portList })));
      } else {
        if (kind === 'literal' || kind === 'rest') {
          const a = g.address().text;
          literals.push({ text: a, ports: portList });
          // Named in its own allowed_ips half the time, or the kernel never opens a literal here.
          if (g.chance(0.5)) ips.push(a);
          fields.push(`host: "${a}"`);
        } else fields.push(`host: "${kind === 'name' ? `h${p}${e}` : `*.w${p}${e}`}.example.test"`);
        if (ips.length > 0) fields.push(`allowed_ips: [${ips.map((c) => `"${c}"`).join(', ')}]`);
        cidrs.push(...ips.map((text) => ({ text, ports: portList })));
        if (kind === 'rest') fields.push('protocol: rest', 'access: read-only', `enforcement: ${g.pick(['enforce', 'audit'])}`);
      }
      lines.push(`      - { ${fields.join(', ')} }`);
    }
    if (p > 0 && g.chance(0.3)) lines.push('    binaries:', '      - path: /usr/bin/curl');
  }
  return { yaml: `${lines.join('\n')}\n`, cidrs, literals };
}

/** Tuples biased towards the edges of the policy's ranges, where the planes could disagree. */
function generateTuples(g: Generator, ports: number[], cidrs: Target[], literals: Target[], n: number): Array<{ address: string; port: number }> {
  const out: Array<{ address: string; port: number }> = [];
  for (let guard = 0; out.length < n && guard < n * 20; guard++) {
    let text: string;
    let port = g.pick(ports);
    const roll = g.random();
    if (roll < 0.5 && cidrs.length > 0) {
      const target = g.pick(cidrs);
      const r = parseRange(target.text);
      if (g.chance(0.8)) port = g.pick(target.ports);
      const size = r.end - r.start + 1n;
      const candidates = [r.start, r.end, r.start - 1n, r.end + 1n, r.start + (size > 1n ? BigInt(g.int(Number(size > 1000n ? 1000n : size))) : 0n)];
      const value = g.pick(candidates);
      if (!inUniverse(r, value)) continue;
      text = formatAddress(value, r.family);
    } else if (roll < 0.65 && literals.length > 0) {
      const target = g.pick(literals);
      text = target.text;
      if (g.chance(0.8)) port = g.pick(target.ports);
    } else {
      text = g.address().text;
    }
    out.push({ address: text, port });
  }
  return out;
}

let lab: Lab;
let engine: PolicyEngine | undefined;

beforeAll(async () => {
  const available = await nftAvailable();
  if (!available.ok) throw new Error(available.why);
  lab = await createLab({ listeners: 4 });
});

afterAll(async () => {
  await lab?.close();
});

describe(`nft agrees with the engine (seed ${SEED})`, () => {
  it(`${ROUNDS} random policies × ${TUPLES_PER_ROUND} tuples: real packets match engine.decide`, async () => {
    const g = new Generator(SEED);
    const ports = lab.tcpPorts;
    let allows = 0;
    let denies = 0;
    let total = 0;
    const forms = new Set<string>();
    for (let round = 0; round < ROUNDS; round++) {
      // Odd rounds draw few prefix lengths, so both forms of direct allows meet real packets.
      g.lengths = round % 2 === 1 ? FEW_LENGTHS : MANY_LENGTHS;
      const { yaml, cidrs, literals } = generatePolicy(g, ports);
      const loaded = loadPolicyText(yaml, `generated-${SEED}-${round}.yaml`);
      const plan = planKernel(loaded.policies);
      for (const family of [4, 6] as const) if (directElements(plan.direct[family]).length > 0) forms.add(plan.direct[family].form);
      if (engine === undefined) engine = await PolicyEngine.create(loaded);
      else engine.replace(loaded);
      const tuples = generateTuples(g, ports, cidrs, literals, TUPLES_PER_ROUND);

      // Without the fence everything connects: every refusal later is the ruleset's.
      await applyRuleset('table inet portcullis\ndelete table inet portcullis\n', { netns: lab.cli });
      const baseline = await lab.probe(tuples, { timeoutMs: 3000 });
      expect(baseline.filter((r) => r !== 'open'), `baseline, seed ${SEED}`).toEqual([]);

      await applyRuleset(renderRuleset(loaded.policies), { netns: lab.cli });
      const verdicts = await lab.probe(tuples, { timeoutMs: 1000 });
      const mismatches: string[] = [];
      const decideAll = () => tuples.map((t) => engine!.decide(buildDecisionInput({ host: t.address, port: t.port, binary: null })));
      const decisions = decideAll();
      const passthrough = loaded.policies.map((p) => ({ ...p, endpoints: p.endpoints.filter((e) => e.tls !== 'inspect') }));
      engine.replace({ file: loaded.file, policies: passthrough, data: buildPolicyData(passthrough) });
      const direct = decideAll();
      tuples.forEach((t, i) => {
        const decision = decisions[i]!;
        const kernel = verdicts[i]!;
        expect(kernel === 'open' || REFUSED.includes(kernel), `${t.address}:${t.port} gave ${kernel} (seed ${SEED})`).toBe(true);
        const kernelAllows = kernel === 'open';
        const dialable = unreachableClass(parseAddress(t.address)!, direct[i]!.explicit_ips === true) === null;
        if (kernelAllows !== (direct[i]!.decision === 'allow' && dialable) || (kernelAllows && decision.decision !== 'allow')) {
          mismatches.push(
            `${t.address} port ${t.port}: kernel ${kernel}, engine ${decision.decision}${decision.inspect ? ' (inspected)' : ''}${dialable ? '' : ' (not dialable: SSRF)'} (${decision.reason})`,
          );
        }
        if (kernelAllows) allows++;
        else denies++;
        total++;
      });
      expect(mismatches, `seed ${SEED}, round ${round}, policy:\n${yaml}`).toEqual([]);
    }
    if (process.env.NFT_DIFF_DEBUG) console.log(`allows ${allows} denies ${denies}`);
    expect([...forms].sort(), `seed ${SEED}`).toEqual(['hashed', 'searched']);
    expect(total).toBeGreaterThanOrEqual(300);
    // Both verdicts must be well represented, or the comparison proves little.
    expect(allows, `seed ${SEED}`).toBeGreaterThanOrEqual(15);
    expect(denies, `seed ${SEED}`).toBeGreaterThanOrEqual(30);
  });
});
