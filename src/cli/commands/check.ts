// `portcullis check --policy F`: validate a policy file; exit 2 with file:line:col per problem.
import type { Command } from 'commander';
import { loadPolicyFile, PolicyLoadError } from '../../policy/load.js';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('validate a policy file (exit 0, or exit 2 with file:line:col: message per problem)')
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .action(async (opts: { policy: string }) => {
      try {
        const loaded = await loadPolicyFile(opts.policy);
        const endpoints = loaded.policies.reduce((n, p) => n + p.endpoints.length, 0);
        process.stdout.write(`${opts.policy}: ok (${loaded.policies.length} policies, ${endpoints} endpoints)\n`);
      } catch (err) {
        if (!(err instanceof PolicyLoadError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
    });
}
