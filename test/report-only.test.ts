// Report-only mode lets a would-deny through, but the SSRF check still refuses special addresses
// that no endpoint for the host names in its allowed_ips. Whether one does comes from the decision
// (the Rego), not from a host matcher of report-only's own. Real wasm engine and the proxy's
// authorise(); names resolve from a fixed table, because the host with an empty label that the
// old matcher let through cannot be carried in a DNS query at all.
import { beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../src/engine/engine.js';
import type { ProcessIdentity } from '../src/identity/types.js';
import { loadPolicyText } from '../src/policy/load.js';
import { authorise, type AuthoriseContext, type RequestFacts } from '../src/proxy/authorise.js';
import { DnsLookupError, type UpstreamLookup } from '../src/proxy/upstream-dns.js';

const POLICY = `version: 1
network_policies:
  corp-git:
    endpoints:
      - { host: "*.corp.example", port: 443, allowed_ips: ["10.40.0.0/16"] }
    binaries:
      - path: /usr/bin/git
`;

const ANSWERS: Record<string, string[]> = {
  'git.corp.example': ['10.40.1.1'],
  'wiki.corp.example': ['10.41.0.1'],
  '.corp.example': ['10.40.1.1'],
};

const table: UpstreamLookup = {
  async lookup(host) {
    const answer = ANSWERS[host];
    if (!answer) throw new DnsLookupError(`${host} did not resolve (NXDOMAIN)`, false);
    return answer;
  },
};

const caller = (path: string): ProcessIdentity => ({ path, pid: 4242, ancestors: [], sha256: null });
const facts = (host: string): RequestFacts => ({ host, port: 443, ip: false });

let engine: PolicyEngine;
const context = (reportOnly: boolean): AuthoriseContext => ({ engine, lookup: table, ownAddresses: new Set(['127.0.0.1']), reportOnly });

beforeAll(async () => {
  engine = await PolicyEngine.create(loadPolicyText(POLICY, 'report-only.yaml'));
});

describe('report-only and the SSRF check', () => {
  it('lets a would-deny through to a private address that an endpoint for the host names', async () => {
    const auth = await authorise(context(true), caller('/usr/bin/curl'), facts('git.corp.example'));
    expect(auth).toMatchObject({ ok: true, addresses: ['10.40.1.1'], decision: { allow: true, decision: 'audit' } });
    expect(auth.decision.reason).toContain('report-only, would deny: binary /usr/bin/curl is not allowed');
  });

  it('refuses a private address outside every allowed_ips for the host', async () => {
    const auth = await authorise(context(true), caller('/usr/bin/curl'), facts('wiki.corp.example'));
    expect(auth).toMatchObject({ ok: false, kind: 'ssrf_denied' });
  });

  it('does not take "*.corp.example" to name the addresses of ".corp.example" (a wildcard never matches an empty label)', async () => {
    const auth = await authorise(context(true), caller('/usr/bin/curl'), facts('.corp.example'));
    expect(auth).toMatchObject({ ok: false, kind: 'ssrf_denied', addresses: ['10.40.1.1'] });
  });

  it('without report-only, the same requests are refused by the policy', async () => {
    for (const host of ['git.corp.example', '.corp.example']) {
      expect(await authorise(context(false), caller('/usr/bin/curl'), facts(host))).toMatchObject({ ok: false, kind: 'policy_denied' });
    }
    expect(await authorise(context(false), caller('/usr/bin/git'), facts('git.corp.example'))).toMatchObject({ ok: true, decision: { decision: 'allow' } });
  });
});
