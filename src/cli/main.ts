#!/usr/bin/env node
// The `portcullis` command line: one sub-command per module in ./commands.
import { Command } from 'commander';
import { registerCheck } from './commands/check.js';
import { registerCompile } from './commands/compile.js';
import { registerEval } from './commands/eval.js';
import { registerProxy } from './commands/proxy.js';
import { registerRun } from './commands/run.js';
import { registerTest } from './commands/test.js';
import { registerWhois } from './commands/whois.js';

const program = new Command('portcullis')
  .description('Egress policy engine: which program may reach which host and port')
  .showHelpAfterError()
  .exitOverride((err) => {
    // Usage errors exit 2, like `check` does for a bad policy; --help and --version exit 0.
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

for (const register of [registerCheck, registerEval, registerTest, registerCompile, registerProxy, registerWhois, registerRun]) {
  register(program);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
