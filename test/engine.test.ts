// The wasm engine: synchronous decisions, atomic swaps, failing loads that keep the old
// policy, and fail-closed evaluation.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EngineLoadError, PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput, RequestPathError } from '../src/engine/input.js';
import { loadPolicyText, PolicyLoadError } from '../src/policy/load.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const policyA = loadPolicyText('version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: a.example, port: 443 }]\n', 'a.yaml');
const policyB = loadPolicyText('version: 1\nnetwork_policies:\n  b:\n    endpoints: [{ host: b.example, port: 443 }]\n', 'b.yaml');
const toA = buildDecisionInput({ host: 'a.example', port: 443 });
const toB = buildDecisionInput({ host: 'b.example', port: 443 });

describe('PolicyEngine', () => {
  it('decides synchronously with the loaded policy', async () => {
    const engine = await PolicyEngine.create(policyA);
    const decision = engine.decide(toA);
    expect(decision).toMatchObject({ allow: true, decision: 'allow', policy: 'a' });
    expect(engine.decide(toB)).toMatchObject({ allow: false, decision: 'deny', policy: null });
  });

  it('replaces the policy in one swap, and no answer of the old policy outlives it', async () => {
    const engine = await PolicyEngine.create(policyA);
    // Asked before the swap (answers are kept per policy)...
    expect(engine.decide(toA).allow).toBe(true);
    expect(engine.decide(toB).allow).toBe(false);
    engine.replace(policyB);
    expect(engine.decide(toA).allow).toBe(false);
    expect(engine.decide(toB).allow).toBe(true);
    expect(engine.source).toBe('b.yaml');
  });

  it('hands out kept answers as copies: a caller changing one changes no later answer', async () => {
    const engine = await PolicyEngine.create(policyA);
    const first = engine.decide(toA);
    first.allow = false;
    first.reason = 'changed by a caller';
    expect(engine.decide(toA)).toMatchObject({ allow: true, decision: 'allow', policy: 'a' });
  });

  it('keeps the old policy when a reload fails', async () => {
    const engine = await PolicyEngine.create(policyA);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: "*", port: 443 }]\n');
    await expect(engine.reloadFile(bad)).rejects.toBeInstanceOf(PolicyLoadError);
    await expect(engine.reloadFile(join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read policy file/);
    expect(engine.decide(toA)).toMatchObject({ allow: true, policy: 'a' });
  });

  it('denies, with the error as reason, when evaluation fails', async () => {
    const ext = join(dir, 'conflict');
    mkdirSync(ext, { recursive: true });
    // Two values for one complete rule: a conflict error at evaluation time.
    writeFileSync(
      join(ext, 'conflict.rego'),
      'package portcullis.ext\n\nx := 1 if input.network.port == 443\n\nx := 2 if input.network.port == 443\n\ndeny contains "never" if x == 3\n',
    );
    const engine = await PolicyEngine.create(policyA, [ext]);
    const decision = engine.decide(toA);
    expect(decision).toMatchObject({ allow: false, decision: 'deny', policy: null });
    expect(decision.reason).toMatch(/^policy evaluation failed \(.+\); denied$/);
    // The same engine still answers inputs that do not hit the conflict.
    expect(engine.decide(buildDecisionInput({ host: 'a.example', port: 80 })).allow).toBe(false);
  });

  it('refuses a bundle that needs builtins the wasm does not implement natively', async () => {
    const ext = join(dir, 'sprintf');
    mkdirSync(ext, { recursive: true });
    writeFileSync(join(ext, 'ext.rego'), 'package portcullis.ext\n\ndeny contains sprintf("port %d", [input.network.port]) if input.network.port == 22\n');
    await expect(PolicyEngine.create(policyA, [ext])).rejects.toThrow(EngineLoadError);
    await expect(PolicyEngine.create(policyA, [ext])).rejects.toThrow(/sprintf/);
  });
});

describe('decision input', () => {
  it('canonicalises host, fills addresses for IP literals, normalises the request path', () => {
    expect(buildDecisionInput({ host: 'API.Example.COM.', port: 1 }).network).toEqual({ host: 'api.example.com', port: 1 });
    expect(buildDecisionInput({ host: '[2001:DB8::1]', port: 1 }).network).toEqual({ host: '2001:db8::1', port: 1, addresses: ['2001:db8::1'] });
    expect(buildDecisionInput({ host: 'x', port: 1 }).exec).toEqual({ path: '<unresolved>', ancestors: [] });
    const pathOf = (path: string) => buildDecisionInput({ host: 'x', port: 1, path }).request?.path;
    expect(pathOf('/v1/a/../admin//x/./y?q=1')).toBe('/v1/admin/x/y?q=1');
    expect(pathOf('/../../etc')).toBe('/etc');
    expect(pathOf('/v1/')).toBe('/v1/');
    expect(() => pathOf('/v1/x/%2e%2e/admin')).toThrow(RequestPathError);
  });
});
