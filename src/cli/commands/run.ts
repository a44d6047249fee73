// `portcullis run`: not built yet.
import type { Command } from 'commander';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('(not available yet)')
    .allowUnknownOption()
    .action(() => {
      process.stderr.write('portcullis run: not available in this build\n');
      process.exit(70);
    });
}
