// The `portcullis` command line: one sub-command per module in ./commands. Only the module of
// the sub-command being run is loaded (start-up time matters for `portcullis run`); `--help`
// and unknown commands load them all. Started by main.ts, bundled into one file.
import { Command } from 'commander';
import { isSubcommand, SUBCOMMANDS, type Subcommand } from './subcommands.js';

type Register = (program: Command) => void;

const COMMANDS: Record<Subcommand, () => Promise<Register>> = {
  check: async () => (await import('./commands/check.js')).registerCheck,
  eval: async () => (await import('./commands/eval.js')).registerEval,
  test: async () => (await import('./commands/test.js')).registerTest,
  compile: async () => (await import('./commands/compile.js')).registerCompile,
  proxy: async () => (await import('./commands/proxy.js')).registerProxy,
  whois: async () => (await import('./commands/whois.js')).registerWhois,
  run: async () => (await import('./commands/run.js')).registerRun,
  build: async () => (await import('./commands/build.js')).registerBuild,
};

async function main(): Promise<void> {
  const program = new Command('portcullis')
    .description('Egress policy engine: which program may reach which host and port')
    .showHelpAfterError()
    .exitOverride((err) => {
      // Usage errors exit 2, like `check` does for a bad policy; --help and --version exit 0.
      process.exit(err.exitCode === 0 ? 0 : 2);
    });
  const requested = process.argv[2];
  const names = isSubcommand(requested) ? [requested] : SUBCOMMANDS;
  for (const name of names) (await COMMANDS[name]())(program);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
