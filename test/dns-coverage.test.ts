// Which names the DNS proxy forwards, checked against the decision engine: for every name the
// proxy covers, the engine allows some caller (a listed binary or the unresolved sentinel) on
// some port; and whenever the engine allows a name with resolved addresses outside every
// hostless range, the proxy covers it. Random policies and names from fast-check, real wasm.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { CoverageIndex, canonicalQueryName } from '../src/dns/coverage.js';
import { kernelEndpoints } from '../src/nft/names.js';
import { loadPolicyText, type LoadedPolicy } from '../src/policy/load.js';

const LABELS = ['a', 'b', 'api', 'x-1', 'docs', 'img-2'];
const SUFFIXES = ['example.com', 'example.org', 'docs.example.org'];
const BINARIES = ['/usr/bin/git', '/usr/bin/curl'];
const PORTS = [443, 8443];
const HOST_ALLOWED = '203.0.113.0/24';
const HOSTLESS_ALLOWED = '10.20.0.0/16';

const suffix = fc.constantFrom(...SUFFIXES);
const exactHost = fc.tuple(fc.array(fc.constantFrom(...LABELS), { minLength: 0, maxLength: 2 }), suffix).map(([ls, s]) => [...ls, s].join('.'));
const wildcardHost = fc
  .tuple(fc.constantFrom('*', '**', 'a*', '*-1', 'img-*', '*i*'), fc.array(fc.constantFrom(...LABELS), { maxLength: 1 }), suffix)
  .map(([w, ls, s]) => [w, ...ls, s].join('.'));

const endpoint = fc.oneof(
  { weight: 4, arbitrary: fc.record({ host: fc.oneof(exactHost, wildcardHost), port: fc.constantFrom(...PORTS), ips: fc.boolean(), rest: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ host: fc.constant(null), port: fc.constantFrom(...PORTS), ips: fc.constant(true), rest: fc.constant(false) }) },
);

const policyDoc = fc
  .array(fc.record({ endpoints: fc.array(endpoint, { minLength: 1, maxLength: 3 }), binaries: fc.subarray(BINARIES) }), { minLength: 1, maxLength: 4 })
  .map((policies) => ({
    version: 1,
    network_policies: Object.fromEntries(
      policies.map((p, i) => [
        `p${i}`,
        {
          endpoints: p.endpoints.map((e) => ({
            ...(e.host === null ? {} : { host: e.host }),
            port: e.port,
            ...(e.ips ? { allowed_ips: [e.host === null ? HOSTLESS_ALLOWED : HOST_ALLOWED] } : {}),
            ...(e.rest ? { protocol: 'rest', rules: [{ allow: { method: 'GET', path: '/**' } }] } : {}),
          })),
          ...(p.binaries.length > 0 ? { binaries: p.binaries.map((path) => ({ path })) } : {}),
        },
      ]),
    ),
  }));

const queryName = fc
  .tuple(fc.array(fc.constantFrom(...LABELS), { maxLength: 3 }), fc.constantFrom(...SUFFIXES, 'example.net', 'org'), fc.boolean(), fc.boolean())
  .map(([ls, s, upper, dot]) => {
    const name = [...ls, s].join('.');
    return `${upper ? name.toUpperCase() : name}${dot ? '.' : ''}`;
  });

let engine: PolicyEngine;

beforeAll(async () => {
  engine = await PolicyEngine.create(loadPolicyText('version: 1\nnetwork_policies: {}\n', 'empty.yaml'));
});

/** Whether the engine allows `name` for some caller on some port (addresses as given). */
function engineAllowsSome(loaded: LoadedPolicy, name: string, addresses?: string[]): boolean {
  for (const port of PORTS) {
    for (const binary of [null, ...BINARIES]) {
      const input = buildDecisionInput({ host: name, port, binary, addresses, method: 'GET', path: '/x' });
      if (engine.decide(input).allow) return true;
    }
  }
  return false;
}

describe('name coverage agrees with the engine', () => {
  it('covered ⇒ the engine allows some caller; engine allows (outside hostless ranges) ⇒ covered', () => {
    let covered = 0;
    let refused = 0;
    fc.assert(
      fc.property(policyDoc, fc.array(queryName, { minLength: 1, maxLength: 12 }), (doc, names) => {
        const loaded = loadPolicyText(JSON.stringify(doc), 'generated.yaml');
        engine.replace(loaded);
        const index = new CoverageIndex(loaded.policies);
        for (const raw of names) {
          const name = canonicalQueryName(raw);
          expect(name).not.toBeNull();
          const isCovered = index.lookup(name!).covered;
          if (isCovered) {
            covered++;
            expect(engineAllowsSome(loaded, raw), `${raw} is covered but the engine allows no caller`).toBe(true);
          } else {
            refused++;
          }
          for (const address of ['192.0.2.1', '203.0.113.5']) {
            if (engineAllowsSome(loaded, raw, [address])) expect(isCovered, `the engine allows ${raw} (${address}) but it is refused`).toBe(true);
          }
        }
      }),
      { numRuns: 150, seed: 20261124 },
    );
    // Both sides of the property were exercised.
    expect(covered).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
  });
});

describe('coverage details', () => {
  const loaded = loadPolicyText(
    `version: 1
network_policies:
  any:
    endpoints:
      - { host: api.example.com, ports: [443, 8443] }
      - { host: "*.cdn.example.com", port: 443, allowed_ips: ["203.0.113.0/25"] }
      - { host: 203.0.113.9, port: 443 }
      - { allowed_ips: ["10.20.0.0/16"], port: 5432 }
      - { host: rest.example.com, port: 80, protocol: rest, rules: [{ allow: { method: GET, path: "/**" } }] }
  tools:
    binaries: [{ path: /usr/bin/git }]
    endpoints:
      - { host: api.example.com, port: 22 }
      - { host: git.example.com, port: 22 }
`,
    'details.yaml',
  );
  const index = new CoverageIndex(loaded.policies);
  const id = (i: number): string => kernelEndpoints(loaded.policies).find((k) => k.policy === 'any' && k.index === i)!.id;

  it('feeds only kernel hostname endpoints, with their ports and allowed_ips', () => {
    const api = index.lookup('api.example.com');
    expect(api.covered).toBe(true);
    expect(api.policies).toEqual(['any', 'tools']);
    expect(api.targets).toHaveLength(1);
    expect(api.targets[0]).toMatchObject({ id: id(0), ports: [443, 8443], allowedIps: [] });
    const cdn = index.lookup('img.cdn.example.com');
    expect(cdn.targets.map((t) => t.id)).toEqual([id(1)]);
    expect(cdn.targets[0]!.allowedIps.map(([a, b]) => `${a.toString()}/${b}`)).toEqual(['203.0.113.0/25']);
    // Covered through a policy with binaries, or an L7 endpoint: forwarded, nothing fed.
    expect(index.lookup('git.example.com')).toMatchObject({ covered: true, policies: ['tools'], targets: [] });
    expect(index.lookup('rest.example.com')).toMatchObject({ covered: true, targets: [] });
  });

  it('covers no name through hostless endpoints or IP-literal hosts', () => {
    expect(index.lookup('db.example.com').covered).toBe(false);
    expect(index.lookup('cdn.example.com').covered).toBe(false);
    expect(index.lookup('a.b.cdn.example.com').covered).toBe(false);
  });

  it('canonicalises query names and rejects what cannot be a host name', () => {
    expect(canonicalQueryName('API.Example.COM.')).toBe('api.example.com');
    expect(canonicalQueryName('_sip._tcp.example.com')).toBe('_sip._tcp.example.com');
    for (const bad of ['', '.', 'a..b', 'a b.com', 'x\u0000y.com', `${'a'.repeat(64)}.com`, 'é.com']) expect(canonicalQueryName(bad)).toBeNull();
  });

  it('matches wildcard names label-wise, as the one host matcher does', () => {
    const wild = new CoverageIndex(
      loadPolicyText(
        `version: 1
network_policies:
  one: { endpoints: [{ host: "*.example.com", port: 443 }] }
  many: { endpoints: [{ host: "**.example.org", port: 443 }] }
  inside: { endpoints: [{ host: "api-*.example.net", port: 443 }] }
`,
        'wild.yaml',
      ).policies,
    );
    const covered = (name: string): string[] => wild.lookup(name).policies;
    expect(covered('a.example.com')).toEqual(['one']);
    expect(covered('a.b.example.com')).toEqual([]);
    expect(covered('a.b.example.org')).toEqual(['many']);
    expect(covered('example.org')).toEqual([]);
    expect(covered('api-1.example.net')).toEqual(['inside']);
    expect(covered('apix1.example.net')).toEqual([]);
  });
});
