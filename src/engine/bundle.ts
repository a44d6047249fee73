// Builds the wasm bundle with `opa build -t wasm` from the built-in Rego plus the author's
// extension Rego. The compiled module does not depend on the policy data (that is set at run
// time), so it is cached by the hash of its Rego sources.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portcullisCacheDir, readTrustedCacheFile } from '../util/cache-dir.js';
import { BUILTIN_REGO_DIR, ENTRYPOINT, opaBinary } from './opa-cli.js';

export class BundleBuildError extends Error {
  override name = 'BundleBuildError';
}

/** The .rego sources (tests excluded) under the given directories, sorted. */
export async function regoSources(dirs: string[]): Promise<string[]> {
  const files: string[] = [];
  async function walk(dir: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new BundleBuildError(`cannot read Rego directory ${dir}: ${(err as Error).message}`);
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.name.endsWith('.rego') && !entry.name.endsWith('_test.rego')) files.push(path);
    }
  }
  for (const dir of dirs) await walk(dir);
  return files.sort();
}

/** execa is loaded only when a bundle has to be built: the wasm is usually cached. */
async function execaLazily(): Promise<typeof import('execa').execa> {
  return (await import('execa')).execa;
}

async function runOpaBuild(sources: string[], outFile: string, dataFile?: string): Promise<void> {
  const args = ['build', '-t', 'wasm', '-e', ENTRYPOINT, '-o', outFile, ...sources];
  if (dataFile) args.push(dataFile);
  const execa = await execaLazily();
  const result = await execa(opaBinary(), args, { reject: false, timeout: 120_000 });
  if (result.exitCode !== 0) {
    throw new BundleBuildError(`opa build failed:\n${result.stderr || result.stdout || result.message}`);
  }
}

async function extractFromBundle(bundle: string, member: string, outDir: string): Promise<Buffer> {
  const execa = await execaLazily();
  const result = await execa('tar', ['-xzf', bundle, '-C', outDir, member], { reject: false });
  if (result.exitCode !== 0) throw new BundleBuildError(`cannot unpack ${member} from ${bundle}: ${result.stderr}`);
  return readFile(join(outDir, member));
}

function cacheDir(): string {
  return portcullisCacheDir('wasm');
}

/** The compiled policy.wasm for the built-in Rego plus `extraDirs`, built once per source hash. */
export async function compiledWasm(extraDirs: string[] = []): Promise<Buffer> {
  const sources = await regoSources([BUILTIN_REGO_DIR, ...extraDirs]);
  // The compiled module depends on the sources' contents, not on where they live: key the
  // cache by the sorted content hashes, so temporary copies of the same Rego share one entry.
  const digests = await Promise.all(sources.map(async (file) => createHash('sha256').update(await readFile(file)).digest('hex')));
  const hash = createHash('sha256');
  for (const digest of digests.sort()) hash.update(digest);
  const key = hash.digest('hex').slice(0, 32);
  const cached = join(cacheDir(), `${key}.wasm`);
  // A compiled policy from a file someone else could write might allow anything: built anew then.
  const kept = readTrustedCacheFile(cached);
  if (kept) return kept;
  const work = await mkdtemp(join(tmpdir(), 'portcullis-build-'));
  try {
    await runOpaBuild(sources, join(work, 'bundle.tar.gz'));
    const wasm = await extractFromBundle(join(work, 'bundle.tar.gz'), '/policy.wasm', work);
    await mkdir(cacheDir(), { recursive: true, mode: 0o700 });
    const partial = `${cached}.${process.pid}.tmp`;
    await writeFile(partial, wasm, { mode: 0o600 });
    await rename(partial, cached);
    return wasm;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Writes a complete bundle to `outDir`: `bundle.tar.gz` as `opa build` makes it (with the
 * policy's data), and `policy.wasm` and `data.json` beside it for loaders that want them bare.
 */
export async function writeWasmBundle(outDir: string, data: unknown, extraDirs: string[] = []): Promise<string[]> {
  const sources = await regoSources([BUILTIN_REGO_DIR, ...extraDirs]);
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'portcullis-build-'));
  try {
    const dataFile = join(work, 'data.json');
    await writeFile(dataFile, JSON.stringify(data));
    const bundle = join(outDir, 'bundle.tar.gz');
    await runOpaBuild(sources, bundle, dataFile);
    await writeFile(join(outDir, 'policy.wasm'), await extractFromBundle(bundle, '/policy.wasm', work));
    await writeFile(join(outDir, 'data.json'), JSON.stringify(data));
    return [bundle, join(outDir, 'policy.wasm'), join(outDir, 'data.json')];
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
