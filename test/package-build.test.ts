// The compiled policy outside the source tree: the key it is shipped and cached under, and what a
// machine without opa is told (an installed package runs its built-in Rego from the prebuilt
// wasm; scripts/check-package.sh proves that end to end from the packed tarball).
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BundleBuildError, compiledWasm, regoSources, regoSourcesKey, type RegoFile } from '../src/engine/bundle.js';
import { BUILTIN_REGO_DIR } from '../src/engine/opa-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-package-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function copyOfBuiltinRego(name: string): string {
  const copy = join(dir, name);
  mkdirSync(copy);
  copyFileSync(join(BUILTIN_REGO_DIR, 'authz.rego'), join(copy, 'authz.rego'));
  return copy;
}

/** The sources of `dir` under the built-in Rego's bundle-relative names. */
async function asBuiltin(dir: string): Promise<RegoFile[]> {
  return (await regoSources([dir])).map((path) => ({ path, name: `portcullis/${path.slice(dir.length + 1)}` }));
}

describe('the compiled policy key', () => {
  it('is the Rego sources names and contents: equal for a copy elsewhere, different after any edit or rename, blind to tests', async () => {
    const builtin = await regoSourcesKey(await asBuiltin(BUILTIN_REGO_DIR));
    const copy = copyOfBuiltinRego('same');
    expect(await regoSourcesKey(await asBuiltin(copy))).toBe(builtin);
    expect(builtin).toMatch(/^[0-9a-f]{32}$/);
    copyFileSync(join(BUILTIN_REGO_DIR, 'authz.rego'), join(copy, 'extra_test.rego'));
    expect(await regoSourcesKey(await asBuiltin(copy))).toBe(builtin);
    // The names are compiled into the wasm: the same Rego under another name is another module.
    expect(await regoSourcesKey((await asBuiltin(copy)).map((f) => ({ ...f, name: `portcullis/ext/1/${f.name}` })))).not.toBe(builtin);
    appendFileSync(join(copy, 'authz.rego'), '\n# edited\n');
    expect(await regoSourcesKey(await asBuiltin(copy))).not.toBe(builtin);
  });
});

describe('without opa', () => {
  it('an extension build fails with a message naming opa, what needs it and how to point at it', async () => {
    const extension = join(dir, 'ext');
    mkdirSync(extension);
    // A source no cache has seen, so the build must run.
    copyFileSync(join(import.meta.dirname, '../policies/examples/ext/ext.rego'), join(extension, 'ext.rego'));
    appendFileSync(join(extension, 'ext.rego'), `\n# ${process.pid}-${Date.now()}\n`);
    const saved = { opa: process.env.PORTCULLIS_OPA, cache: process.env.XDG_CACHE_HOME };
    process.env.PORTCULLIS_OPA = join(dir, 'no-opa-here');
    process.env.XDG_CACHE_HOME = join(dir, 'cache');
    try {
      const failure = await compiledWasm([extension]).then(() => null, (err: unknown) => err);
      expect(failure).toBeInstanceOf(BundleBuildError);
      expect((failure as Error).message).toMatch(/opa CLI .*no-opa-here.* is not installed.*--rego.*PORTCULLIS_OPA/);
    } finally {
      for (const [name, value] of [['PORTCULLIS_OPA', saved.opa], ['XDG_CACHE_HOME', saved.cache]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
