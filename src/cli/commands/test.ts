// `portcullis test`: not built yet.
import type { Command } from 'commander';

export function registerTest(program: Command): void {
  program
    .command('test')
    .description('(not available yet)')
    .allowUnknownOption()
    .action(() => {
      process.stderr.write('portcullis test: not available in this build\n');
      process.exit(70);
    });
}
