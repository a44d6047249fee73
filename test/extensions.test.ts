// Author extensions (package portcullis.ext): their deny rules reach the decision through the
// wasm engine, `portcullis eval --rego` and a compiled bundle, and answer as `opa eval` does;
// an extension that needs builtins outside WebAssembly is refused.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { afterAll, describe, expect, it } from 'vitest';
import { EngineLoadError, PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput, type RequestFacts } from '../src/engine/input.js';
import { ENTRYPOINT, opaBinary } from '../src/engine/opa-cli.js';
import { loadPolicyFile, loadPolicyText } from '../src/policy/load.js';
import type { Decision } from '../src/policy/types.js';
import { cli } from './support/cli.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-ext-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const POLICY = 'policies/examples/extensions.yaml';
const EXT = 'policies/examples/ext';
const EXTENSION_PREFIX = 'blocked by an extension rule: ';

function writeExtension(name: string, rego: string): string {
  const target = join(dir, name);
  mkdirSync(target, { recursive: true });
  writeFileSync(join(target, 'ext.rego'), rego);
  return target;
}

/** Requests the YAML allows and the example extension denies, and requests it leaves alone. */
const EXTENSION_DENIES: Array<{ facts: RequestFacts; reason: string }> = [
  {
    facts: { host: 'git.example.com', port: 22, binary: '/usr/bin/python3' },
    reason: 'port 22 (SSH) may only be used by the ssh client',
  },
  {
    facts: { host: 'Abc.Paste.Example', port: 80, binary: '/usr/bin/curl', method: 'put', path: '/new' },
    reason: 'uploads (PUT) to paste sites such as abc.paste.example are not allowed',
  },
  {
    facts: { host: 'x.cache.example.org', port: 8443 },
    reason: 'an unidentified program may only use port 443',
  },
];
const EXTENSION_ALLOWS: RequestFacts[] = [
  { host: 'git.example.com', port: 22, binary: '/usr/bin/ssh', ancestors: ['/usr/bin/git'] },
  { host: 'abc.paste.example', port: 80, binary: '/usr/bin/curl', method: 'GET', path: '/raw/1' },
  { host: 'x.cache.example.org', port: 443 },
];

describe('extension deny rules in the wasm engine', () => {
  it('deny what the YAML allows, with the extension reason', async () => {
    const loaded = await loadPolicyFile(POLICY);
    const plain = await PolicyEngine.create(loaded);
    const extended = await PolicyEngine.create(loaded, [EXT]);
    for (const { facts, reason } of EXTENSION_DENIES) {
      const input = buildDecisionInput(facts);
      expect(plain.decide(input)).toMatchObject({ allow: true, decision: 'allow' });
      expect(extended.decide(input)).toEqual({ allow: false, decision: 'deny', reason: EXTENSION_PREFIX + reason, policy: null, explicit_ips: false });
    }
    for (const facts of EXTENSION_ALLOWS) {
      const input = buildDecisionInput(facts);
      expect(extended.decide(input)).toEqual(plain.decide(input));
      expect(extended.decide(input).allow).toBe(true);
    }
  });

  it('keeps the extension across a policy swap', async () => {
    const extended = await PolicyEngine.create(await loadPolicyFile(POLICY), [EXT]);
    extended.replace(loadPolicyText('version: 1\nnetwork_policies:\n  ssh:\n    endpoints: [{ host: other.example, port: 22 }]\n', 'swap.yaml'));
    const decision = extended.decide(buildDecisionInput({ host: 'other.example', port: 22, binary: '/usr/bin/nc' }));
    expect(decision.reason).toBe(`${EXTENSION_PREFIX}port 22 (SSH) may only be used by the ssh client`);
    expect(extended.decide(buildDecisionInput({ host: 'other.example', port: 22, binary: '/usr/bin/ssh' })).allow).toBe(true);
  });

  it('can read the policy data and the decision helpers', async () => {
    // A rule of the author's own: a request that only a binary-less policy lets through must
    // stay on port 443.
    const ext = writeExtension(
      'data-reading',
      `package portcullis.ext

deny contains {"reason": concat("", ["policy ", name, " has no binaries, so it may only open port 443"])} if {
	some name in data.portcullis.authz.allowing_policies
	count(data.portcullis.policies[name].binaries) == 0
	input.network.port != 443
}
`,
    );
    const engine = await PolicyEngine.create(await loadPolicyFile(POLICY), [ext]);
    expect(engine.decide(buildDecisionInput({ host: 'a.cache.example.org', port: 8443, binary: '/usr/bin/make' }))).toMatchObject({
      allow: false,
      reason: `${EXTENSION_PREFIX}policy build-cache has no binaries, so it may only open port 443`,
    });
    expect(engine.decide(buildDecisionInput({ host: 'a.cache.example.org', port: 443, binary: '/usr/bin/make' })).allow).toBe(true);
    // pastebin lists binaries: port 80 stays allowed for curl.
    expect(engine.decide(buildDecisionInput({ host: 'a.paste.example', port: 80, binary: '/usr/bin/curl', method: 'GET', path: '/' })).allow).toBe(true);
  });

  it.each([
    ['sprintf', 'deny contains sprintf("port %d", [input.network.port]) if input.network.port == 23'],
    ['time.now_ns', 'deny contains "night" if time.now_ns() > 0'],
  ])('refuses an extension that needs %s (not native in wasm)', async (builtin, rule) => {
    const ext = writeExtension(`js-${builtin}`, `package portcullis.ext\n\n${rule}\n`);
    const attempt = PolicyEngine.create(await loadPolicyFile(POLICY), [ext]);
    await expect(attempt).rejects.toBeInstanceOf(EngineLoadError);
    await expect(attempt).rejects.toThrow(new RegExp(`non-native builtins: .*${builtin.replace('.', '\\.')}`));
  });
});

describe('portcullis eval --rego', () => {
  it('prints the extension denial, and the YAML answer without --rego', async () => {
    const args = ['eval', '--policy', POLICY, '--host', 'git.example.com', '--port', '22', '--binary', '/usr/bin/python3'];
    const withExt = await cli(...args, '--rego', EXT);
    expect(withExt.code).toBe(0);
    expect(JSON.parse(withExt.stdout)).toEqual({
      allow: false,
      decision: 'deny',
      reason: `${EXTENSION_PREFIX}port 22 (SSH) may only be used by the ssh client`,
      policy: null,
    });
    const without = await cli(...args);
    expect(JSON.parse(without.stdout)).toMatchObject({ allow: true, policy: 'source-hosting' });
  });

  it('denies an L7 upload through the extension', async () => {
    const result = await cli(
      'eval', '--policy', POLICY, '--rego', EXT, '--host', 'abc.paste.example', '--port', '80',
      '--binary', '/usr/bin/curl', '--method', 'POST', '--path', '/new',
    );
    expect(JSON.parse(result.stdout)).toMatchObject({ allow: false, reason: `${EXTENSION_PREFIX}uploads (POST) to paste sites such as abc.paste.example are not allowed` });
  });
});

describe('compile --target wasm --rego', () => {
  it('writes a bundle whose policy.wasm carries the extension', async () => {
    const out = join(dir, 'bundle');
    const result = await cli('compile', '--policy', POLICY, '--rego', EXT, '--target', 'wasm', '--out', out);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const wasm = readFileSync(join(out, 'policy.wasm'));
    const policy = await loadPolicy(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength) as ArrayBuffer);
    policy.setData(JSON.parse(readFileSync(join(out, 'data.json'), 'utf8')) as object);
    const decide = (facts: RequestFacts): Decision => (policy.evaluate(buildDecisionInput(facts), ENTRYPOINT) as Array<{ result: Decision }>)[0]!.result;
    for (const { facts, reason } of EXTENSION_DENIES) {
      expect(decide(facts)).toMatchObject({ allow: false, reason: EXTENSION_PREFIX + reason });
    }
    for (const facts of EXTENSION_ALLOWS) expect(decide(facts).allow).toBe(true);
    // The tarball holds the same module and the policy's data.
    const listing = await run('tar', ['-tzf', join(out, 'bundle.tar.gz')], { encoding: 'utf8' });
    expect(listing.stdout).toMatch(/policy\.wasm/);
    expect(listing.stdout).toMatch(/data\.json/);
  });
});

describe('parity with opa eval', () => {
  it('answers every example request as opa eval does on the same Rego and data', async () => {
    const loaded = await loadPolicyFile(POLICY);
    const engine = await PolicyEngine.create(loaded, [EXT]);
    const dataFile = join(dir, 'parity-data.json');
    writeFileSync(dataFile, JSON.stringify({ portcullis: loaded.data }));
    const requests = [...EXTENSION_DENIES.map((d) => d.facts), ...EXTENSION_ALLOWS, { host: 'nowhere.example', port: 22, binary: '/usr/bin/ssh' }];
    for (const facts of requests) {
      const input = buildDecisionInput(facts);
      const inputFile = join(dir, 'parity-input.json');
      writeFileSync(inputFile, JSON.stringify(input));
      const { stdout } = await run(
        opaBinary(),
        ['eval', '-f', 'json', '-d', 'policies/portcullis/authz.rego', '-d', join(EXT, 'ext.rego'), '-d', dataFile, '-i', inputFile, 'data.portcullis.authz.decision'],
        { encoding: 'utf8' },
      );
      const expected = (JSON.parse(stdout) as { result: Array<{ expressions: Array<{ value: Decision }> }> }).result[0]!.expressions[0]!.value;
      expect(engine.decide(input)).toEqual(expected);
    }
  });
});
