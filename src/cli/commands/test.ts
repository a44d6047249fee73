// `portcullis test --policy F [--rego DIR]… [TESTDIR…]`: runs the author's Rego unit tests
// (`*_test.rego`) with `opa test` against the built-in decision Rego, the policy's data document
// and the author's extension Rego, so that tests see exactly what the engine evaluates.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { execa } from 'execa';
import { regoSources } from '../../engine/bundle.js';
import { PolicyEngine } from '../../engine/engine.js';
import { BUILTIN_REGO_DIR, opaBinary } from '../../engine/opa-cli.js';
import { loadPolicyFile, PolicyLoadError, type LoadedPolicy } from '../../policy/load.js';
import { collect } from '../repeatable.js';

interface TestOptions {
  policy: string;
  rego?: string[];
  verbose?: boolean;
  coverage?: boolean;
  run?: string;
  format?: string;
}

/** Exit code for a policy, extension or argument that cannot be used (as `check` uses). */
const EXIT_INVALID = 2;

class TestSetupError extends Error {
  override name = 'TestSetupError';
}

async function requireDirectoryOrFile(path: string, what: string): Promise<void> {
  try {
    await stat(path);
  } catch {
    throw new TestSetupError(`portcullis test: ${what} "${path}" does not exist`);
  }
}

/**
 * The extension must run in the engine, not only under `opa test`: build the wasm with it and
 * load the policy, which refuses a module that needs builtins not compiled into WebAssembly.
 */
async function checkExtensionsBuild(loaded: LoadedPolicy, regoDirs: string[]): Promise<void> {
  if (regoDirs.length === 0) return;
  try {
    await PolicyEngine.create(loaded, regoDirs);
  } catch (err) {
    const message = (err as Error).message;
    let hint = '';
    if (message.includes('non-native builtins')) {
      hint = '\nextension Rego may use only builtins compiled into WebAssembly (e.g. concat, not sprintf; no time.*, no net.cidr_contains_matches)';
    } else if (message.includes('data.portcullis.ext.deny')) {
      hint = '\n`deny` in package portcullis.ext must be a set of reasons: deny contains "reason" if { … }';
    }
    throw new TestSetupError(`portcullis test: the extension Rego in ${regoDirs.join(', ')} cannot be loaded by the engine: ${message}${hint}`);
  }
}

function opaTestArgs(opts: TestOptions, paths: string[]): string[] {
  const args = ['test', '--fail-on-empty'];
  if (opts.verbose) args.push('--verbose');
  if (opts.coverage) args.push('--coverage');
  if (opts.run !== undefined) args.push('--run', opts.run);
  if (opts.format !== undefined) args.push('--format', opts.format);
  return [...args, ...paths];
}

async function runTests(opts: TestOptions, testDirs: string[]): Promise<number> {
  const regoDirs = opts.rego ?? [];
  const loaded = await loadPolicyFile(opts.policy);
  for (const dir of regoDirs) await requireDirectoryOrFile(dir, 'extension Rego directory');
  for (const dir of testDirs) await requireDirectoryOrFile(dir, 'test directory');
  if (opts.format !== undefined && !['pretty', 'json'].includes(opts.format)) {
    throw new TestSetupError(`portcullis test: --format must be pretty or json, not "${opts.format}"`);
  }
  await checkExtensionsBuild(loaded, regoDirs);

  const work = await mkdtemp(join(tmpdir(), 'portcullis-test-'));
  try {
    // The built-in Rego file by file: its own unit tests and their test data stay out.
    const builtin = await regoSources([BUILTIN_REGO_DIR]);
    // A data file given by path is loaded at the root of `data`: data.portcullis.policies, …
    const dataFile = join(work, 'data.json');
    await writeFile(dataFile, JSON.stringify({ portcullis: loaded.data }));
    const result = await execa(opaBinary(), opaTestArgs(opts, [...builtin, ...regoDirs, dataFile, ...testDirs]), {
      stdio: 'inherit',
      reject: false,
    });
    if (result.exitCode === undefined) {
      throw new TestSetupError(`portcullis test: cannot run ${opaBinary()}: ${result.message}`);
    }
    return result.exitCode;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export function registerTest(program: Command): void {
  program
    .command('test')
    .description("run the author's *_test.rego with opa test against the built-in Rego, the policy's data and the extension Rego")
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .option('--rego <dir>', 'directory of extension Rego (repeatable); its *_test.rego run too', collect)
    .option('-v, --verbose', 'list every test (opa test --verbose)')
    .option('-c, --coverage', 'report coverage as JSON (opa test --coverage)')
    .option('-r, --run <regex>', 'run only the tests whose name matches (opa test --run)')
    .option('-f, --format <format>', 'pretty or json (opa test --format)')
    .argument('[testdirs...]', "directories or files of the author's *_test.rego")
    .action(async (testDirs: string[], opts: TestOptions) => {
      try {
        process.exitCode = await runTests(opts, testDirs);
      } catch (err) {
        if (!(err instanceof PolicyLoadError || err instanceof TestSetupError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exitCode = EXIT_INVALID;
      }
    });
}
