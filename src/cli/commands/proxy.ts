// `portcullis proxy`: not built yet.
import type { Command } from 'commander';

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('(not available yet)')
    .allowUnknownOption()
    .action(() => {
      process.stderr.write('portcullis proxy: not available in this build\n');
      process.exit(70);
    });
}
