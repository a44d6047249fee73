// Builds the wasm bundle with `opa build -t wasm` from the built-in Rego plus the author's
// extension Rego. The compiled module does not depend on the policy data (that is set at run
// time), so it is keyed by the hash of its Rego sources: shipped prebuilt in the package for
// the built-in Rego alone (scripts/prebuilt-policy.mjs, at `npm pack`), else built once and
// cached.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { portcullisCacheDir, readTrustedCacheFile } from '../util/cache-dir.js';
import { BUILTIN_REGO_DIR, ENTRYPOINT, opaBinary, PROJECT_ROOT } from './opa-cli.js';

/** Where the package carries compiled policies, one `<key>.wasm` per Rego source set. */
export const PREBUILT_WASM_DIR = join(PROJECT_ROOT, 'dist', 'wasm');

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

/** A Rego source and its bundle-relative name (what opa records in the wasm, and a bundle holds). */
export interface RegoFile {
  path: string;
  name: string;
}

/**
 * The sources under bundle-relative names: the built-in Rego under `portcullis/`, the Nth
 * extension directory under `portcullis/ext/N/`. Compiled under these names, the wasm carries no
 * path of the build machine, and the same Rego gives the same bytes wherever it is built.
 */
export async function regoFiles(extraDirs: string[] = []): Promise<RegoFile[]> {
  const out: RegoFile[] = [];
  for (const [i, dir] of [BUILTIN_REGO_DIR, ...extraDirs].entries()) {
    const prefix = i === 0 ? 'portcullis' : `portcullis/ext/${i}`;
    for (const path of await regoSources([dir])) out.push({ path, name: `${prefix}/${relative(dir, path).split('\\').join('/')}` });
  }
  return out;
}

/** execa is loaded only when a bundle has to be built: the wasm is usually cached. */
async function execaLazily(): Promise<typeof import('execa').execa> {
  return (await import('execa')).execa;
}

/** `opa build -t wasm` on copies of the sources under their bundle-relative names, from `work`. */
async function runOpaBuild(files: RegoFile[], work: string, outFile: string, dataFile?: string): Promise<void> {
  const staged = join(work, 'src');
  for (const file of files) {
    await mkdir(dirname(join(staged, file.name)), { recursive: true });
    await writeFile(join(staged, file.name), await readFile(file.path));
  }
  const args = ['build', '-t', 'wasm', '-e', ENTRYPOINT, '-o', outFile, ...files.map((f) => f.name)];
  if (dataFile) args.push(dataFile);
  const execa = await execaLazily();
  const opa = opaBinary();
  const result = await execa(opa, args, { reject: false, timeout: 120_000, cwd: staged });
  if ((result as { code?: string }).code === 'ENOENT') {
    throw new BundleBuildError(
      `the opa CLI (${opa}) is not installed: it compiles extension Rego (--rego) and runs \`portcullis test\`; ` +
        'install opa or set PORTCULLIS_OPA to its path (the built-in Rego alone needs no opa in an installed package)',
    );
  }
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

/** The cache key of a set of Rego sources: their names and contents, not where they live. */
export async function regoSourcesKey(files: RegoFile[]): Promise<string> {
  // Temporary copies of the same Rego share one key; the names are compiled into the wasm.
  const entries = await Promise.all(files.map(async (f) => `${f.name}\0${createHash('sha256').update(await readFile(f.path)).digest('hex')}`));
  const hash = createHash('sha256');
  for (const entry of entries.sort()) hash.update(`${entry}\n`);
  return hash.digest('hex').slice(0, 32);
}

/** The prebuilt module for `key` when the package ships one that only its owner can write. */
function readPrebuiltWasm(key: string): Buffer | null {
  try {
    const fd = openSync(join(PREBUILT_WASM_DIR, `${key}.wasm`), 'r');
    try {
      // Installed with the program that reads it, by whoever installed it (root or the user).
      return (fstatSync(fd).mode & 0o022) === 0 ? readFileSync(fd) : null;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

/** policy.wasm for exactly these Rego sources, compiled now by `opa build` (no cache). */
export async function buildWasm(files: RegoFile[]): Promise<Buffer> {
  const work = await mkdtemp(join(tmpdir(), 'portcullis-build-'));
  try {
    await runOpaBuild(files, work, join(work, 'bundle.tar.gz'));
    return await extractFromBundle(join(work, 'bundle.tar.gz'), '/policy.wasm', work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The compiled policy.wasm for the built-in Rego plus `extraDirs`: shipped, cached, or built once per source hash. */
export async function compiledWasm(extraDirs: string[] = []): Promise<Buffer> {
  const files = await regoFiles(extraDirs);
  const key = await regoSourcesKey(files);
  const shipped = readPrebuiltWasm(key);
  if (shipped) return shipped;
  const cached = join(cacheDir(), `${key}.wasm`);
  // A compiled policy from a file someone else could write might allow anything: built anew then.
  const kept = readTrustedCacheFile(cached);
  if (kept) return kept;
  const wasm = await buildWasm(files);
  await mkdir(cacheDir(), { recursive: true, mode: 0o700 });
  const partial = `${cached}.${process.pid}.tmp`;
  await writeFile(partial, wasm, { mode: 0o600 });
  await rename(partial, cached);
  return wasm;
}

/**
 * Writes a complete bundle to `outDir`: `bundle.tar.gz` as `opa build` makes it (with the
 * policy's data), and `policy.wasm` and `data.json` beside it for loaders that want them bare.
 */
export async function writeWasmBundle(outDir: string, data: unknown, extraDirs: string[] = []): Promise<string[]> {
  const files = await regoFiles(extraDirs);
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'portcullis-build-'));
  try {
    const dataFile = join(work, 'data.json');
    await writeFile(dataFile, JSON.stringify(data));
    const bundle = join(outDir, 'bundle.tar.gz');
    await runOpaBuild(files, work, bundle, dataFile);
    await writeFile(join(outDir, 'policy.wasm'), await extractFromBundle(bundle, '/policy.wasm', work));
    await writeFile(join(outDir, 'data.json'), JSON.stringify(data));
    return [bundle, join(outDir, 'policy.wasm'), join(outDir, 'data.json')];
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
