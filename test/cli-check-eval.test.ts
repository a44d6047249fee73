// `portcullis check` and `portcullis eval` as a user runs them (the built CLI, a real process).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURE = 'testdata/policies/fixture.yaml';

describe('portcullis check', () => {
  it('accepts a valid policy', async () => {
    const result = await cli('check', '--policy', FIXTURE);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ok');
  });

  it('exits 2 naming file, line, column and the problem for each error', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'network_policies:',
        '  p:',
        '    endpoints:',
        '      - host: "*.com"',
        '        port: 70000',
        '      - host: exa mple.com',
        '        port: 443',
        '        ports: [443]',
        '      - allowed_ips: ["127.0.0.0/8"]',
        '        port: 5432',
        '    binaries:',
        '      - path: usr/bin/git',
        '    colour: blue',
        '',
      ].join('\n'),
    );
    const result = await cli('check', '--policy', file);
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines.every((l) => l.startsWith(`${file}:`))).toBe(true);
    expect(result.stderr).toContain(`${file}:14:5: unknown key "colour"`);
    // Structure errors come first (a policy with an unknown key is not checked further).
    const fixed = join(dir, 'bad2.yaml');
    writeFileSync(fixed, ['version: 1', 'network_policies:', '  p:', '    endpoints:', '      - host: "*.com"', '        port: 443', '      - host: exa mple.com', '        port: 443', '        ports: [443]', '      - allowed_ips: ["127.0.0.0/8"]', '        port: 5432', '    binaries:', '      - path: usr/bin/git', ''].join('\n'));
    const second = await cli('check', '--policy', fixed);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`${fixed}:5:15: host "*.com": a wildcard may not stand in the last two labels`);
    expect(second.stderr).toContain(`${fixed}:7:15: host "exa mple.com" contains characters that are not valid in a hostname`);
    expect(second.stderr).toContain(`${fixed}:9:9: give either "port" or "ports", not both`);
    expect(second.stderr).toContain(`${fixed}:10:23: allowed_ips entry "127.0.0.0/8" covers loopback addresses`);
    expect(second.stderr).toContain(`${fixed}:13:15: binary path "usr/bin/git" must be absolute`);
  });

  it('exits 2 for a file that does not exist or is not YAML', async () => {
    expect((await cli('check', '--policy', join(dir, 'nope.yaml'))).code).toBe(2);
    const garbage = join(dir, 'garbage.yaml');
    writeFileSync(garbage, '\u0000\u0001{{{: ]');
    const result = await cli('check', '--policy', garbage);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/garbage\.yaml:\d+:\d+: /);
  });
});

describe('portcullis eval', () => {
  it('prints the decision JSON', async () => {
    const result = await cli('eval', '--policy', FIXTURE, '--host', 'api.github.com', '--port', '443', '--binary', '/usr/bin/git');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ allow: true, decision: 'allow', reason: 'api.github.com:443 allowed by policy github', policy: 'github', inspect: false });
  });

  it('says whether an allowed tunnel is to be TLS-inspected', async () => {
    const tunnel = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'api.internal.example', '--port', '8080', '--binary', '/usr/bin/curl')).stdout);
    expect(tunnel).toEqual({ allow: true, decision: 'allow', reason: 'api.internal.example:8080 allowed by policy internal-api', policy: 'internal-api', inspect: true });
    const passthrough = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'opaque.internal.example', '--port', '443')).stdout);
    expect(passthrough).toMatchObject({ allow: false, policy: 'tls-modes' });
    expect(passthrough.reason).toContain('tls: passthrough');
    expect(passthrough.inspect).toBeUndefined();
  });

  it('uses <unresolved> without --binary', async () => {
    const denied = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'api.github.com', '--port', '443')).stdout);
    expect(denied.allow).toBe(false);
    expect(denied.reason).toContain('<unresolved>');
    const allowed = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'registry.example.org', '--port', '443')).stdout);
    expect(allowed).toMatchObject({ allow: true, policy: 'mirror' });
  });

  it('matches ancestors and L7 method/path', async () => {
    const viaAncestor = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'api.github.com', '--port', '443', '--binary', '/usr/bin/curl', '--ancestor', '/bin/bash', '--ancestor', '/usr/bin/git')).stdout);
    expect(viaAncestor.allow).toBe(true);
    const l7 = JSON.parse((await cli('eval', '--policy', FIXTURE, '--host', 'api.internal.example', '--port', '8080', '--method', 'DELETE', '--path', '/v1/admin/x')).stdout);
    expect(l7).toMatchObject({ allow: false, decision: 'deny', policy: 'internal-api' });
  });

  it('rejects a bad port with exit 2', async () => {
    const result = await cli('eval', '--policy', FIXTURE, '--host', 'a', '--port', '0');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('1 to 65535');
  });
});
