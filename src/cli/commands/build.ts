// `portcullis build`: the policy as an OPA bundle (`opa run --bundle` and portcullis's own
// `--bundle` load it), signed when a key is given.
import { writeFile, rename } from 'node:fs/promises';
import type { Command } from 'commander';
import { buildBundle } from '../../bundle/build.js';
import { jwsAlgorithm, signingOptions, type SigningFlags } from '../bundle-options.js';
import { loadPolicyOrExit } from '../policy-or-exit.js';
import { collect } from '../repeatable.js';

interface BuildFlags extends SigningFlags {
  policy: string;
  rego?: string[];
  revision?: string;
  wasmOnly?: boolean;
  out: string;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('write the policy as an OPA bundle (.manifest, policy.wasm, data.json, the Rego, .signatures.json when signing)')
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .option('--rego <dir>', 'directory of extension Rego (repeatable)', collect)
    .option('--revision <rev>', 'revision written to the manifest')
    .option('--wasm-only', 'leave the Rego sources out (opa then evaluates the wasm; it prefers the Rego when both are there)')
    .option('--signing-key <file|secret>', 'sign with this PEM private key (HS*: the secret)')
    .option('--signing-alg <alg>', 'signing algorithm', jwsAlgorithm, 'RS256')
    .option('--signing-key-id <id>', 'key id named in the signature', 'default')
    .option('--claims-file <file>', 'JSON file of extra claims for the signature')
    .option('--scope <scope>', 'scope written into the signature')
    .requiredOption('--out <file>', 'bundle file to write (.tar.gz)')
    .action(async (flags: BuildFlags) => {
      const loaded = await loadPolicyOrExit(flags.policy);
      let signing;
      try {
        signing = signingOptions(flags);
      } catch (err) {
        process.stderr.write(`portcullis build: ${(err as Error).message}\n`);
        process.exit(2);
      }
      const bundle = await buildBundle({ data: loaded.data, regoDirs: flags.rego ?? [], ...(flags.revision !== undefined ? { revision: flags.revision } : {}), wasmOnly: flags.wasmOnly === true, ...(signing ? { signing } : {}) });
      const partial = `${flags.out}.${process.pid}.tmp`;
      await writeFile(partial, bundle);
      await rename(partial, flags.out);
      process.stdout.write(`${flags.out}\n`);
    });
}
