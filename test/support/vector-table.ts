// The table the parity vectors are generated from: hosts × binaries × ports against
// testdata/policies/fixture.yaml, plus hand-written edge cases.
import type { RequestFacts } from '../../src/engine/input.js';
import type { ExpectedDecision } from './reference-decision.js';

export interface Vector {
  name: string;
  facts: RequestFacts;
  expected: ExpectedDecision;
  /** For hand-written cases: a fragment the reason must contain. */
  reason_contains?: string;
}

export const HOSTS = [
  'api.github.com',
  'API.GITHUB.COM.',
  'github.com',
  'raw.githubusercontent.com',
  'a.b.githubusercontent.com',
  'githubusercontent.com',
  'x.deep.example',
  'x.y.z.deep.example',
  'deep.example',
  'api-eu.example.net',
  'web.example.net',
  'registry.example.org',
  'shared.example.com',
  'any.example.com',
  'evil.example',
  'bücher.example',
  'logged.example.com',
  'opaque.internal.example',
  'creds.example.com',
];

export const BINARIES: Array<{ binary: string | null; ancestors: string[] }> = [
  { binary: '/usr/bin/git', ancestors: [] },
  { binary: '/usr/bin/curl', ancestors: [] },
  { binary: '/usr/bin/curl', ancestors: ['/bin/bash', '/usr/bin/git'] },
  { binary: '/usr/bin/sub/tool', ancestors: [] },
  { binary: '/usr/lib/node_modules/npm/bin/npm-cli.js', ancestors: [] },
  { binary: null, ancestors: [] },
];

export const PORTS = [443, 80, 8443];

export const EDGE_CASES: Array<Omit<Vector, 'expected'>> = [
  { name: 'credentials: request allowed by the binding endpoint', facts: { host: 'creds.example.com', port: 443, binary: '/usr/bin/curl', method: 'POST', path: '/x' } },
  { name: 'credentials: plain HTTP endpoint allowing clear text', facts: { host: 'creds.example.com', port: 80, binary: '/usr/bin/curl', method: 'GET', path: '/x' } },
  { name: 'credentials: request the binding endpoint does not permit', facts: { host: 'creds.example.com', port: 80, binary: '/usr/bin/curl', method: 'POST', path: '/x' } },
  { name: 'credentials: two policies bind for one caller', facts: { host: 'creds.example.com', port: 443, binary: '/usr/bin/curl', ancestors: ['/usr/bin/git'], method: 'GET', path: '/x' } },
  { name: 'credentials: other binary, other credential', facts: { host: 'creds.example.com', port: 8443, binary: '/usr/bin/git', method: 'GET', path: '/x' } },
  { name: 'credentials: audit decision binds none', facts: { host: 'creds.example.com', port: 8443, binary: '/usr/bin/git', method: 'DELETE', path: '/x' } },
  { name: 'hostless CIDR inside', facts: { host: 'pg.example', port: 5432, addresses: ['10.20.3.4'] } },
  { name: 'hostless CIDR v6 inside', facts: { host: 'pg6.example', port: 5432, addresses: ['2001:db8:20::9'] } },
  { name: 'hostless CIDR one address outside', facts: { host: 'pg.example', port: 5432, addresses: ['10.20.3.4', '10.21.0.1'] }, reason_contains: 'outside the allowed_ips' },
  { name: 'hostless CIDR wrong port', facts: { host: 'pg.example', port: 5433, addresses: ['10.20.3.4'] } },
  { name: 'hostless before resolution', facts: { host: 'pg.example', port: 5432 } },
  { name: 'IP literal host inside CIDR', facts: { host: '10.20.0.1', port: 5432 } },
  { name: 'IP literal host outside CIDR', facts: { host: '10.40.0.1', port: 5432 } },
  { name: 'host with allowed_ips inside', facts: { host: 'db.internal.example', port: 5433, binary: '/usr/bin/psql', addresses: ['10.30.0.8'] } },
  { name: 'host with allowed_ips outside', facts: { host: 'db.internal.example', port: 5433, binary: '/usr/bin/psql', addresses: ['10.20.0.8'] } },
  { name: 'literal host policy', facts: { host: '198.51.100.7', port: 22, binary: '/usr/bin/ssh' } },
  { name: 'literal host other port', facts: { host: '198.51.100.7', port: 23, binary: '/usr/bin/ssh' }, reason_contains: 'is not allowed by any policy' },
  { name: 'L7 GET allowed', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'GET', path: '/v1/users' } },
  { name: 'L7 POST item allowed', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'post', path: '/v1/items/3' } },
  { name: 'L7 POST nested item denied', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'POST', path: '/v1/items/3/x' }, reason_contains: 'not permitted' },
  { name: 'L7 deny rule wins', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'GET', path: '/v1/admin/x' }, reason_contains: 'deny rule' },
  { name: 'L7 dot segments normalised into deny rule', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'GET', path: '/v1/users/../admin/x' }, reason_contains: 'deny rule' },
  { name: 'L7 query ignored', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl', method: 'GET', path: '/v1/x?admin=1' } },
  { name: 'L7 tunnel to rest endpoint, to be inspected', facts: { host: 'api.internal.example', port: 8080, binary: '/usr/bin/curl' }, reason_contains: 'allowed by policy internal-api' },
  { name: 'L7 tunnel to passthrough rest endpoint', facts: { host: 'opaque.internal.example', port: 443, binary: '/usr/bin/curl' }, reason_contains: 'tls: passthrough' },
  { name: 'L7 plain request to passthrough rest endpoint', facts: { host: 'opaque.internal.example', port: 443, method: 'GET', path: '/' }, reason_contains: 'not permitted' },
  { name: 'inspected L4 endpoint, tunnel', facts: { host: 'logged.example.com', port: 443, binary: '/usr/bin/curl' } },
  { name: 'inspected L4 endpoint, any request', facts: { host: 'logged.example.com', port: 443, binary: '/usr/bin/curl', method: 'DELETE', path: '/x' } },
  { name: 'inspected and passthrough endpoints disagree: inspected', facts: { host: 'shared.example.com', port: 443, binary: '/usr/bin/wget' } },
  { name: 'disagreeing endpoints: passthrough one allows the request', facts: { host: 'shared.example.com', port: 443, binary: '/usr/bin/curl', method: 'DELETE', path: '/x' } },
  { name: 'audit endpoint tunnel, to be inspected', facts: { host: 'audit.internal.example', port: 8080 } },
  { name: 'read-only preset GET', facts: { host: 'ro.internal.example', port: 80, method: 'GET', path: '/a/b' } },
  { name: 'read-only preset DELETE', facts: { host: 'ro.internal.example', port: 80, method: 'DELETE', path: '/a/b' } },
  { name: 'audit enforcement would-deny', facts: { host: 'audit.internal.example', port: 8080, method: 'PUT', path: '/ok/1' }, reason_contains: 'would be denied' },
  { name: 'audit enforcement allowed', facts: { host: 'audit.internal.example', port: 8080, method: 'GET', path: '/ok/1' } },
  { name: 'unresolved vs /**', facts: { host: 'any.example.com', port: 443 }, reason_contains: '<unresolved>' },
  { name: 'resolved vs /**', facts: { host: 'any.example.com', port: 443, binary: '/x' } },
  { name: 'overlap smallest name', facts: { host: 'shared.example.com', port: 443, binary: '/usr/bin/curl' } },
  { name: 'overlap other binary', facts: { host: 'shared.example.com', port: 443, binary: '/usr/bin/wget' } },
  { name: 'binary deny names policy', facts: { host: 'api.github.com', port: 443, binary: '/usr/bin/wget' }, reason_contains: 'allow only their listed binaries' },
  { name: 'ancestor deep in chain', facts: { host: 'api.github.com', port: 443, binary: '/usr/bin/ssh', ancestors: ['/bin/sh', '/bin/bash', '/usr/bin/git'] } },
  { name: 'trailing dot exact', facts: { host: 'registry.example.org.', port: 80 } },
  { name: 'unicode host', facts: { host: 'BÜCHER.example', port: 443 } },
  { name: 'punycode host', facts: { host: 'xn--bcher-kva.example', port: 443 } },
  { name: 'wildcard inside label across dot', facts: { host: 'api-x.eu.example.net', port: 443, binary: '/usr/bin/x' } },
  { name: 'wildcard inside label multi-port', facts: { host: 'api-x.example.net', port: 8443, binary: '/usr/bin/x' } },
  { name: 'wildcard inside label matches an empty run', facts: { host: 'api-.example.net', port: 443, binary: '/usr/bin/x' } },
  { name: 'star never matches an empty label', facts: { host: '.githubusercontent.com', port: 443, binary: '/usr/bin/git' }, reason_contains: 'is not allowed by any policy' },
  { name: 'double star never matches an empty label', facts: { host: '.deep.example', port: 443, binary: '/usr/bin/x' }, reason_contains: 'is not allowed by any policy' },
  { name: 'double star never matches an inner empty label', facts: { host: 'a..deep.example', port: 443, binary: '/usr/bin/x' }, reason_contains: 'is not allowed by any policy' },
];
