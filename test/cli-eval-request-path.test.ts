// `portcullis eval` on the paths that walked around a deny rule (issue 14): each is either
// refused as the proxy refuses it (exit 2, no decision printed) or decided in canonical form.
import { describe, expect, it } from 'vitest';
import { cli } from './support/cli.js';

const FIXTURE = 'testdata/policies/fixture.yaml';
const evalPath = (path: string) => cli('eval', '--policy', FIXTURE, '--host', 'api.internal.example', '--port', '8080', '--binary', '/usr/bin/curl', '--method', 'GET', '--path', path);

describe('portcullis eval --path', () => {
  it.each([
    ['/v1/x/%2e%2e/admin/users', /encoded dot segment/],
    ['/v1/x/..;/admin/users', /";" path parameter/],
    ['/v1/x/..%2fadmin/users', /encoded "\/" \(%2F\)/],
  ])('refuses %s with exit 2 and the reason, printing no decision', async (path, why) => {
    const result = await evalPath(path);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('the proxy refuses this path with 400');
    expect(result.stderr).toMatch(why);
  });

  it('decides /v1/%61dmin/users as /v1/admin/users: the deny rule applies', async () => {
    const result = await evalPath('/v1/%61dmin/users');
    expect(result.code).toBe(0);
    const decision = JSON.parse(result.stdout) as { allow: boolean; decision: string; reason: string; policy: string };
    expect(decision).toMatchObject({ allow: false, decision: 'deny', policy: 'internal-api' });
    expect(decision.reason).toContain('GET /v1/admin/users');
    expect(decision.reason).toContain('deny rule');
  });

  it('still allows an ordinary path, and decides the query-free canonical path', async () => {
    const result = await evalPath('/v1//users/./list?filter=%2e%2e');
    expect(JSON.parse(result.stdout)).toMatchObject({ allow: true, decision: 'allow', policy: 'internal-api' });
  });
});
