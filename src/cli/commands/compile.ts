// `portcullis compile`: not built yet.
import type { Command } from 'commander';

export function registerCompile(program: Command): void {
  program
    .command('compile')
    .description('(not available yet)')
    .allowUnknownOption()
    .action(() => {
      process.stderr.write('portcullis compile: not available in this build\n');
      process.exit(70);
    });
}
