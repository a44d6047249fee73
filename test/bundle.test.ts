// OPA bundles: `portcullis build` writes bundles the real `opa` (built with opa_wasm) loads,
// verifies and answers from with portcullis's decisions; bundles signed by `opa build` verify in
// portcullis; tampering, a missing file, a wrong scope or an unknown key are refused; builds are
// reproducible and bundle-relative.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readArchive, writeArchive, ArchiveError, type BundleFile } from '../src/bundle/archive.js';
import { readBundle } from '../src/bundle/read.js';
import { fileDigest, verifyBundle, BundleVerificationError, type VerificationOptions } from '../src/bundle/signatures.js';
import { canonicalJson } from '../src/bundle/structured-hash.js';
import { PolicyEngine } from '../src/engine/engine.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { opaBinary } from '../src/engine/opa-cli.js';
import type { Decision } from '../src/policy/types.js';
import { startOpaServer } from './support/opa-server.js';
import type { Vector } from './support/vector-table.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/cli/main.js');
const FIXTURE = join(ROOT, 'testdata/policies/fixture.yaml');
const vectors = JSON.parse(readFileSync(join(ROOT, 'testdata/vectors.json'), 'utf8')) as Vector[];

let work: string;
let opaWasm: string;
const keys: Record<string, { privatePem: string; publicPem: string }> = {};

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    return { code: 0, stdout: execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), stderr: '' };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `opa build` signing the directory's bundle; a scope goes in through a claims file, as opa takes it. */
function opaBuildSigned(dir: string, out: string, alg: string, key: string, scope?: string): void {
  const claims = scope === undefined ? [] : ['--claims-file', join(work, `claims-${scope}.json`)];
  if (scope !== undefined) writeFileSync(join(work, `claims-${scope}.json`), JSON.stringify({ scope }));
  execFileSync(opaBinary(), ['build', '-b', '.', '-t', 'wasm', '-e', 'portcullis/authz/decision', '--signing-alg', alg, '--signing-key', key, '-o', out, ...claims], { cwd: dir, stdio: 'pipe' });
}

async function opaDecisions(url: string, inputs: unknown[]): Promise<Decision[]> {
  const out: Decision[] = [];
  for (const input of inputs) {
    const res = await fetch(`${url}/v1/data/portcullis/authz/decision`, { method: 'POST', body: JSON.stringify({ input }) });
    out.push(((await res.json()) as { result: Decision }).result);
  }
  return out;
}

beforeAll(() => {
  opaWasm = execFileSync('bash', [join(ROOT, 'scripts/build-opa-wasm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  work = mkdtempSync(join(tmpdir(), 'pc-bundle-'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (const [name, pair] of Object.entries({ rsa, ec })) {
    keys[name] = { privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
    writeFileSync(join(work, `${name}.key`), keys[name]!.privatePem);
    writeFileSync(join(work, `${name}.pub`), keys[name]!.publicPem);
  }
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('portcullis build', () => {
  it('writes a reproducible bundle with bundle-relative paths and the wasm entrypoint in its manifest', async () => {
    const a = join(work, 'a.tar.gz');
    const b = join(work, 'b.tar.gz');
    expect(cli(['build', '--policy', FIXTURE, '--revision', 'r1', '--out', a]).code).toBe(0);
    expect(cli(['build', '--policy', FIXTURE, '--revision', 'r1', '--out', b]).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const files = await readArchive(readFileSync(a));
    expect(files.map((f) => f.name).sort()).toEqual(['.manifest', 'data.json', 'policy.wasm', 'portcullis/authz.rego']);
    expect(files.every((f) => !f.data.includes(Buffer.from(ROOT)))).toBe(true);
    expect(JSON.parse(files.find((f) => f.name === '.manifest')!.data.toString())).toEqual({
      revision: 'r1',
      roots: ['portcullis'],
      wasm: [{ entrypoint: 'portcullis/authz/decision', module: '/policy.wasm' }],
      rego_version: 1,
    });
  });

  it('is loaded and verified by the real opa, whose Go evaluator answers alike with portcullis\'s wasm on every parity vector', async () => {
    const bundle = join(work, 'signed.tar.gz');
    expect(cli(['build', '--policy', FIXTURE, '--revision', 'r2', '--signing-key', join(work, 'rsa.key'), '--out', bundle]).code).toBe(0);
    const contents = await readBundle(readFileSync(bundle), { keys: { default: { algorithm: 'RS256', key: keys.rsa!.publicPem } } });
    const engine = await PolicyEngine.fromWasm(contents.wasm, contents.data, bundle);
    const inputs = vectors.map((v) => buildDecisionInput(v.facts));
    const opa = await startOpaServer(opaWasm, ['--bundle', bundle, '--verification-key', join(work, 'rsa.pub')], { readyPath: '/health?bundles' });
    try {
      const theirs = await opaDecisions(opa.url, inputs);
      inputs.forEach((input, i) => {
        const ours = engine.decide(input);
        expect({ ...theirs[i], explicit_ips: undefined }, vectors[i]!.name).toEqual({ ...ours, explicit_ips: undefined });
      });
    } finally {
      await opa.stop();
    }
  }, 120_000);

  it('without its Rego (--wasm-only), opa built with opa_wasm answers from the bundle\'s wasm, alike with portcullis', async () => {
    const bundle = join(work, 'wasm-only.tar.gz');
    expect(cli(['build', '--policy', FIXTURE, '--wasm-only', '--out', bundle]).code).toBe(0);
    expect((await readArchive(readFileSync(bundle))).map((f) => f.name).sort()).toEqual(['.manifest', 'data.json', 'policy.wasm']);
    const contents = await readBundle(readFileSync(bundle));
    const engine = await PolicyEngine.fromWasm(contents.wasm, contents.data, bundle);
    const inputs = vectors.map((v) => buildDecisionInput(v.facts));
    const opa = await startOpaServer(opaWasm, ['--bundle', bundle], { readyPath: '/health?bundles' });
    try {
      const theirs = await opaDecisions(opa.url, inputs);
      inputs.forEach((input, i) => expect(theirs[i], vectors[i]!.name).toEqual(engine.decide(input)));
    } finally {
      await opa.stop();
    }
  }, 120_000);

  it('with its Rego, opa evaluates the Rego (its Go evaluator), not the wasm: a Rego that disagrees changes its answer', async () => {
    const plain = join(work, 'plain.tar.gz');
    expect(cli(['build', '--policy', FIXTURE, '--out', plain]).code).toBe(0);
    const files = await readArchive(readFileSync(plain));
    const rego = files.find((f) => f.name === 'portcullis/authz.rego')!;
    rego.data = Buffer.from('package portcullis.authz\n\ndecision := {"allow": false, "decision": "deny", "reason": "rego, not wasm", "policy": null}\n');
    const bundle = join(work, 'mixed.tar.gz');
    writeFileSync(bundle, await writeArchive(files));
    const opa = await startOpaServer(opaWasm, ['--bundle', bundle], { readyPath: '/health?bundles' });
    try {
      const [decision] = await opaDecisions(opa.url, [buildDecisionInput({ host: 'api.github.com', port: 443, binary: '/usr/bin/git' })]);
      expect(decision).toMatchObject({ allow: false, reason: 'rego, not wasm' });
    } finally {
      await opa.stop();
    }
  }, 60_000);
});

describe('bundles signed by opa build verify in portcullis', () => {
  let dir: string;
  beforeAll(() => {
    dir = join(work, 'opa-src');
    mkdirSync(join(dir, 'portcullis'), { recursive: true });
    writeFileSync(join(dir, 'portcullis/authz.rego'), readFileSync(join(ROOT, 'policies/portcullis/authz.rego')));
    const data = execFileSync(process.execPath, [CLI, 'compile', '--policy', FIXTURE, '--target', 'wasm', '--out', join(work, 'compiled')], { encoding: 'utf8' });
    expect(data).toContain('data.json');
    writeFileSync(join(dir, 'data.json'), readFileSync(join(work, 'compiled/data.json')));
  });

  it.each([
    ['RS256', 'rsa'],
    ['PS384', 'rsa'],
    ['ES256', 'ec'],
    ['HS256', 'secret'],
  ])('%s', async (alg, keyName) => {
    const out = join(work, `opa-${alg}.tar.gz`);
    const secret = 'a shared secret of the fleet';
    opaBuildSigned(dir, out, alg, keyName === 'secret' ? secret : join(work, `${keyName}.key`), 'write');
    const key = keyName === 'secret' ? secret : keys[keyName]!.publicPem;
    const contents = await readBundle(readFileSync(out), { keys: { default: { algorithm: alg as 'RS256', key } }, scope: 'write' });
    const engine = await PolicyEngine.fromWasm(contents.wasm, contents.data, out);
    expect(engine.decide(buildDecisionInput({ host: 'api.github.com', port: 443, binary: '/usr/bin/git' }))).toMatchObject({ allow: true, policy: 'github' });
  }, 60_000);

  describe('refusals, each with a clear error', () => {
    let signed: BundleFile[];
    const verification: VerificationOptions = { keys: {}, scope: 'write' };
    beforeAll(async () => {
      const out = join(work, 'opa-refusals.tar.gz');
      opaBuildSigned(dir, out, 'RS256', join(work, 'rsa.key'), 'write');
      signed = await readArchive(readFileSync(out));
      verification.keys = { default: { algorithm: 'RS256', key: keys.rsa!.publicPem } };
    });
    const refuse = (files: BundleFile[], opts: VerificationOptions, message: RegExp): void => {
      expect(() => verifyBundle(files, opts)).toThrow(BundleVerificationError);
      expect(() => verifyBundle(files, opts)).toThrow(message);
    };
    it('accepts the untouched bundle', () => {
      expect(() => verifyBundle(signed, verification)).not.toThrow();
    });
    it('a tampered file', () => {
      refuse(signed.map((f) => (f.name === 'data.json' ? { ...f, data: Buffer.from(f.data.toString().replace('github', 'gitlab')) } : f)), verification, /data.json: hash does not match/);
    });
    it('a missing file', () => {
      refuse(signed.filter((f) => f.name !== 'portcullis/authz.rego'), verification, /portcullis\/authz.rego is in the signature but missing/);
    });
    it('an added file', () => {
      refuse([...signed, { name: 'extra.rego', data: Buffer.from('package x') }], verification, /extra.rego is in the bundle but not in its signature/);
    });
    it('a wrong scope', () => {
      refuse(signed, { ...verification, scope: 'read' }, /scope "write" does not match the configured scope "read"/);
    });
    it('an unknown key id', () => {
      refuse(signed, { ...verification, keyId: 'other' }, /unknown key id "other"/);
    });
    it('another key', () => {
      refuse(signed, { ...verification, keys: { default: { algorithm: 'ES256', key: keys.ec!.publicPem } } }, /does not verify/);
    });
    it('a signed bundle read without keys', async () => {
      await expect(readBundle(await writeArchive(signed))).rejects.toThrow(/signed but no verification key/);
    });
  });
});

describe('structured file digests', () => {
  it('match opa build on values that JSON writers disagree on (number spellings, escapes, key order by bytes)', async () => {
    const dir = join(work, 'tricky');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'x.rego'), 'package portcullis.authz\n\ndecision := {"allow": true}\n');
    const tricky = '{"s": "<a&b> é \\u2028 \\u0001 \\t / \\"q\\" 😀", "f": 1.50, "big": 12345678901234567890, "e": 1E21, "neg": -0.0001, "z": null, "é": 1, "z2": [true, false, {}], "\\u00e9a": 2, "A": {"b": [], "a": "x"}}';
    writeFileSync(join(dir, 'data.json'), tricky);
    const out = join(work, 'tricky.tar.gz');
    opaBuildSigned(dir, out, 'RS256', join(work, 'rsa.key'));
    const files = await readArchive(readFileSync(out));
    expect(() => verifyBundle(files, { keys: { default: { algorithm: 'RS256', key: keys.rsa!.publicPem } } })).not.toThrow();
    expect(fileDigest({ name: 'data.json', data: Buffer.from(tricky) })).toBe(fileDigest(files.find((f) => f.name === 'data.json')!));
  }, 60_000);

  it('canonical JSON is idempotent and equal in value to the input', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        const canonical = canonicalJson(text);
        expect(canonicalJson(canonical)).toBe(canonical);
        expect(JSON.parse(canonical)).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });
});

describe('archive limits', () => {
  it('refuses a gzip bomb, an unsafe path and a non-gzip file', async () => {
    const { gzipSync } = await import('node:zlib');
    const bomb = await writeArchive([{ name: 'big.bin', data: Buffer.alloc(64 * 1024 * 1024) }]);
    expect(bomb.length).toBeLessThan(1024 * 1024);
    await expect(readArchive(bomb, { maxBytes: 8 * 1024 * 1024, maxFiles: 10 })).rejects.toThrow(/gzip bomb/);
    await expect(readArchive(await writeArchive([{ name: '../etc/passwd', data: Buffer.from('x') }]))).rejects.toThrow(ArchiveError);
    await expect(readArchive(gzipSync(Buffer.from('not a tar at all, just text')))).rejects.toThrow(ArchiveError);
    await expect(readArchive(Buffer.from('plain'))).rejects.toThrow(/not gzip/);
  });
});
