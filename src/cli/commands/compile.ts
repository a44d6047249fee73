// `portcullis compile`: the policy as a wasm bundle (`--target wasm --out DIR`) or as an
// nftables script (`--target nft`).
import type { Command } from 'commander';
import { writeWasmBundle } from '../../engine/bundle.js';
import { loadPolicyOrExit } from '../policy-or-exit.js';
import { collect } from '../repeatable.js';

interface CompileOptions {
  policy: string;
  target: string;
  out?: string;
  rego?: string[];
  proxy?: string;
  dns?: string;
  sni?: string;
}

export function registerCompile(program: Command): void {
  program
    .command('compile')
    .description('compile the policy: --target wasm --out DIR (opa build -t wasm) or --target nft (nftables script)')
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .requiredOption('--target <target>', 'wasm or nft')
    .option('--out <dir>', 'output directory (wasm)')
    .option('--rego <dir>', 'directory of extension Rego (repeatable)', collect)
    .option('--proxy <addr:port>', 'address of the proxy the fence lets through (nft)')
    .option('--dns <addr:port>', 'address of the DNS proxy the fence lets through (nft)')
    .option('--sni <addr:port>', 'transparent SNI listener: direct TCP/443 not otherwise allowed is redirected there (nft)')
    .action(async (opts: CompileOptions) => {
      const loaded = await loadPolicyOrExit(opts.policy);
      if (opts.target === 'wasm') {
        if (!opts.out) {
          process.stderr.write('portcullis compile: --target wasm needs --out DIR\n');
          process.exit(2);
        }
        const files = await writeWasmBundle(opts.out, { portcullis: loaded.data }, opts.rego ?? []);
        process.stdout.write(`${files.join('\n')}\n`);
        return;
      }
      if (opts.target === 'nft') {
        const { compileNftCommand } = await import('./compile-nft.js');
        process.stdout.write(compileNftCommand(loaded, opts));
        return;
      }
      process.stderr.write(`portcullis compile: unknown --target "${opts.target}" (wasm or nft)\n`);
      process.exit(2);
    });
}
