// Policy loading: every rule of the schema, with errors located at file:line:col.
import { describe, expect, it } from 'vitest';
import { parsePolicySource } from '../src/policy/source.js';
import { buildPolicyData } from '../src/policy/data-document.js';
import { parseHostPattern } from '../src/policy/host-pattern.js';
import type { SourceError } from '../src/policy/types.js';

function errorsOf(text: string): SourceError[] {
  const result = parsePolicySource(text, 'p.yaml');
  if (result.ok) throw new Error('expected the policy to be rejected');
  return result.errors;
}

/** A one-endpoint policy with `line` placed as the endpoint's extra content (line 6 onwards). */
const withEndpoint = (endpoint: string, extra = ''): string =>
  `version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - ${endpoint}\n${extra}`;

describe('valid policies normalise', () => {
  it('lower-cases hosts, drops the trailing dot, sorts ports, expands access presets', () => {
    const result = parsePolicySource(
      withEndpoint('host: API.Example.COM.\n        ports: [8443, 443, 443]\n        protocol: rest\n        access: read-only'),
      'p.yaml',
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const endpoint = result.policies[0]!.endpoints[0]!;
    expect(endpoint.host).toBe('api.example.com');
    expect(endpoint.ports).toEqual([443, 8443]);
    expect(endpoint.rules).toEqual([
      { method: 'GET', path: '/**' },
      { method: 'HEAD', path: '/**' },
      { method: 'OPTIONS', path: '/**' },
    ]);
  });

  it('tls defaults to inspect for rest endpoints and passthrough for the others; inspect needs no rest', () => {
    const result = parsePolicySource(
      `version: 1
network_policies:
  p:
    endpoints:
      - { host: a.example, port: 443, protocol: rest, access: read-only }
      - { host: b.example, port: 443 }
      - { host: c.example, port: 443, tls: inspect }
      - { host: d.example, port: 443, protocol: rest, tls: passthrough }
`,
      'p.yaml',
    );
    expect(result.ok && result.policies[0]!.endpoints.map((e) => [e.host, e.tls])).toEqual([
      ['a.example', 'inspect'],
      ['b.example', 'passthrough'],
      ['c.example', 'inspect'],
      ['d.example', 'passthrough'],
    ]);
  });

  it('uses name: over the key, and omitted or empty binaries become []', () => {
    const text = `version: 1
network_policies:
  key-a:
    name: shown-name
    endpoints: [{ host: a.example, port: 1 }]
  key-b:
    endpoints: [{ host: b.example, port: 2 }]
    binaries: []
`;
    const result = parsePolicySource(text, 'p.yaml');
    expect(result.ok && result.policies.map((p) => [p.name, p.binaries])).toEqual([
      ['key-b', []],
      ['shown-name', []],
    ]);
  });

  it('indexes exact hosts, wildcard suffixes and hostless ports', () => {
    const text = `version: 1
network_policies:
  p:
    endpoints:
      - { host: a.example.com, port: 443 }
      - { host: "*.example.com", port: 443 }
      - { host: "**.deep.example.com", port: 443 }
      - { allowed_ips: ["10.0.0.0/8"], ports: [5432, 5433] }
`;
    const result = parsePolicySource(text, 'p.yaml');
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    expect(buildPolicyData(result.policies).index).toEqual({
      exact: { 'a.example.com': [['p', 0]] },
      wildcard: { 'example.com': [['p', 1]], 'deep.example.com': [['p', 2]] },
      hostless: { '5432': [['p', 3]], '5433': [['p', 3]] },
    });
  });

  it('canonicalises allowed_ips to network addresses', () => {
    const result = parsePolicySource(withEndpoint('allowed_ips: ["10.20.3.4/16", "2001:DB8::1"]\n        port: 1'), 'p.yaml');
    expect(result.ok && result.policies[0]!.endpoints[0]!.allowed_ips).toEqual(['10.20.0.0/16', '2001:db8::1/128']);
  });

  it('accepts ranges beside the never-declarable ones, IPv6 forms of ordinary IPv4 included', () => {
    const entries = ['11.0.0.0/8', '126.255.255.255', '192.0.0.0/2', '169.253.0.0/16', '2002:b00::/24', '64:ff9b::b00:0/104', '::100:0/104', '2001:db8::/32', 'fe00::/9'];
    const result = parsePolicySource(withEndpoint(`allowed_ips: ${JSON.stringify(entries)}\n        port: 1`), 'p.yaml');
    expect(result.ok ? result.policies[0]!.endpoints[0]!.allowed_ips : result.errors).toEqual(
      ['11.0.0.0/8', '126.255.255.255/32', '192.0.0.0/2', '169.253.0.0/16', '2002:b00::/24', '64:ff9b::b00:0/104', '::100:0/104', '2001:db8::/32', 'fe00::/9'].sort(),
    );
  });
});

describe('host patterns', () => {
  it.each([
    ['*.example.com', 'wildcard', 'example.com'],
    ['api-*.example.com', 'wildcard', 'example.com'],
    ['**.example.com', 'wildcard', 'example.com'],
    ['a.*.example.com', 'wildcard', 'example.com'],
    ['bücher.example', 'exact', 'xn--bcher-kva.example'],
    ['localhost', 'exact', 'localhost'],
  ])('%s is accepted', (pattern, kind, key) => {
    const parsed = parseHostPattern(pattern);
    expect(parsed.ok && [parsed.kind, parsed.indexKey]).toEqual([kind, key]);
  });

  it.each([
    ['*', 'every host'],
    ['**', 'every host'],
    ['*.com', 'last two labels'],
    ['example.*', 'last two labels'],
    ['a.**.b.example', 'whole first label'],
    ['**a.example.com', 'whole first label'],
    ['exa mple.com', 'not valid in a hostname'],
    ['a..example.com', 'empty label'],
    ['.example.com', 'empty label'],
    ['under_score.example', 'not valid in a hostname'],
    ['-bad.example', 'start or end with "-"'],
    [`${'a'.repeat(64)}.example`, 'longer than 63'],
  ])('%s is rejected (%s)', (pattern, fragment) => {
    const parsed = parseHostPattern(pattern);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toContain(fragment);
  });
});

describe('bad policies are rejected with file:line:col', () => {
  it.each([
    ['YAML syntax error', 'version: 1\nnetwork_policies:\n  p: [unclosed\n', 4, 1, 'YAML syntax error'],
    ['duplicate key', 'version: 1\nnetwork_policies:\n  p:\n    endpoints: []\n  p:\n    endpoints: []\n', 5, 3, 'YAML syntax error'],
    ['unknown top-level key', 'version: 1\nnetwork_policy: {}\n', 2, 1, 'unknown key "network_policy"'],
    ['wrong version', 'version: 2\nnetwork_policies: {}\n', 1, 10, 'version: 1'],
    ['missing endpoints', 'version: 1\nnetwork_policies:\n  p:\n    binaries: []\n', 4, 5, 'missing the required key "endpoints"'],
    ['unknown endpoint key (typo)', withEndpoint('host: a.example\n        prot: 443'), 6, 9, 'unknown key "prot"'],
    ['unknown binary key', withEndpoint('{ host: a.example, port: 1 }', '    binaries:\n      - pth: /usr/bin/x\n'), 7, 9, 'unknown key "pth"'],
    ['port as string', withEndpoint('host: a.example\n        port: "443"'), 6, 15, 'must be integer'],
    ['port 0', withEndpoint('host: a.example\n        port: 0'), 6, 15, '1 to 65535'],
    ['port 70000', withEndpoint('host: a.example\n        port: 70000'), 6, 15, '1 to 65535'],
    ['ports entry 70000', withEndpoint('host: a.example\n        ports: [443, 70000]'), 6, 22, '1 to 65535'],
    ['both port and ports', withEndpoint('host: a.example\n        port: 1\n        ports: [2]'), 7, 9, 'not both'],
    ['neither port nor ports', withEndpoint('host: a.example'), 5, 9, 'needs "port" or "ports"'],
    ['no host and no allowed_ips', withEndpoint('port: 1'), 5, 9, 'needs "host", "allowed_ips" or both'],
    ['bare star host', withEndpoint('host: "*"\n        port: 1'), 5, 15, 'every host'],
    ['star in TLD', withEndpoint('host: "*.com"\n        port: 1'), 5, 15, 'last two labels'],
    ['double star inside', withEndpoint('host: a.**.b\n        port: 1'), 5, 15, '"**" is allowed only'],
    ['space in host', withEndpoint('host: exa mple.com\n        port: 1'), 5, 15, 'not valid in a hostname'],
    ['relative binary', withEndpoint('{ host: a.example, port: 1 }', '    binaries:\n      - path: bin/git\n'), 7, 15, 'must be absolute'],
    ['glob syntax in binary', withEndpoint('{ host: a.example, port: 1 }', '    binaries:\n      - path: /usr/bin/[ab]\n'), 7, 15, 'only "*" and "**"'],
    ['loopback in allowed_ips', withEndpoint('allowed_ips: ["127.0.0.1"]\n        port: 1'), 5, 23, 'loopback'],
    ['range covering loopback', withEndpoint('allowed_ips: ["0.0.0.0/0"]\n        port: 1'), 5, 23, 'can never be allowed'],
    ['link-local in allowed_ips', withEndpoint('allowed_ips: ["169.254.169.254"]\n        port: 1'), 5, 23, 'link-local'],
    ['IPv6 loopback', withEndpoint('allowed_ips: ["::1"]\n        port: 1'), 5, 23, 'loopback'],
    // A range overlapping a never-declarable one in any IPv6 form that carries IPv4, named.
    ...([
      ['range around mapped loopback', '::fff0:0:0/92', 'covers loopback addresses (::ffff:7f00:0/104 = 127.0.0.0/8 in its IPv4-mapped form)'],
      ['mapped loopback', '::ffff:127.0.0.0/104', 'covers loopback addresses (::ffff:7f00:0/104 = 127.0.0.0/8 in its IPv4-mapped form)'],
      ['the whole of IPv6', '::/0', 'covers loopback addresses (::1/128)'],
      ['6to4 loopback', '2002:7f00::/24', 'covers loopback addresses (2002:7f00::/24 = 127.0.0.0/8 in its 6to4 form)'],
      ['NAT64 loopback', '64:ff9b::7f00:1/128', 'covers loopback addresses (64:ff9b::7f00:0/104 = 127.0.0.0/8 in its NAT64 form)'],
      ['compatible loopback', '::127.0.0.1', 'covers loopback addresses (::7f00:0/104 = 127.0.0.0/8 in its IPv4-compatible form)'],
      ['6to4 metadata', '2002:a9fe:a9fe::/48', 'covers link-local addresses (2002:a9fe::/32 = 169.254.0.0/16 in its 6to4 form)'],
      ['Teredo client loopback', '2001:0:4136:e378:8000:63bf:80ff:fffe', 'covers loopback addresses (Teredo client addresses in 2001::/32 that carry 127.0.0.0/8)'],
      ['local NAT64 unspecified', '64:ff9b:1::/64', 'covers unspecified addresses (64:ff9b:1::/56 = 0.0.0.0/8 in its local NAT64 /48 form)'],
    ] as const).map(([label, entry, message]) => [label, withEndpoint(`allowed_ips: ["${entry}"]\n        port: 1`), 5, 23, message] as const),
    ['bad CIDR', withEndpoint('allowed_ips: ["10.0.0.0/33"]\n        port: 1'), 5, 23, 'not an IP address or CIDR'],
    ['short IPv4 spelling', withEndpoint('allowed_ips: ["10.1"]\n        port: 1'), 5, 23, 'not an IP address or CIDR'],
    ['rules without protocol rest', withEndpoint('host: a.example\n        port: 80\n        rules: []'), 7, 9, 'only to endpoints with "protocol: rest"'],
    ['bad method', withEndpoint('host: a.example\n        port: 80\n        protocol: rest\n        rules:\n          - allow: { method: "GE T", path: "/" }'), 9, 30, 'HTTP method'],
    ['relative rule path', withEndpoint('host: a.example\n        port: 80\n        protocol: rest\n        deny_rules:\n          - { method: GET, path: "v1" }'), 9, 34, 'must start with "/"'],
    ['unknown access preset', withEndpoint('host: a.example\n        port: 80\n        protocol: rest\n        access: everything'), 8, 17, 'must be one of'],
    ['passthrough with rules', withEndpoint('host: a.example\n        port: 443\n        protocol: rest\n        tls: passthrough\n        rules:\n          - allow: { method: GET, path: "/" }'), 9, 9, 'which "tls: passthrough" (an opaque tunnel) does not allow'],
    ['passthrough with deny_rules', withEndpoint('host: a.example\n        port: 443\n        protocol: rest\n        deny_rules: []\n        tls: passthrough'), 8, 9, '"deny_rules" needs to see each request'],
    ['passthrough with access', withEndpoint('host: a.example\n        port: 443\n        tls: passthrough\n        protocol: rest\n        access: full'), 9, 9, '"access" needs to see each request'],
    ['unknown tls mode', withEndpoint('host: a.example\n        port: 443\n        tls: skip'), 7, 14, 'must be one of "inspect", "passthrough"'],
    ['duplicate policy names', 'version: 1\nnetwork_policies:\n  a:\n    endpoints: []\n  b:\n    name: a\n    endpoints: []\n', 6, 11, 'already used'],
    ['empty file', '', 1, 1, 'empty'],
  ])('%s', (_label, text, line, col, fragment) => {
    const errors = errorsOf(text);
    const match = errors.find((e) => e.message.includes(fragment));
    expect(match, JSON.stringify(errors)).toBeDefined();
    expect([match!.file, match!.line, match!.col]).toEqual(['p.yaml', line, col]);
  });

  it('reports every problem, not just the first', () => {
    const errors = errorsOf(withEndpoint('host: "*"\n        port: 0\n        colour: red'));
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });
});
