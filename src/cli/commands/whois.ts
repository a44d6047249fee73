// `portcullis whois`: not built yet.
import type { Command } from 'commander';

export function registerWhois(program: Command): void {
  program
    .command('whois')
    .description('(not available yet)')
    .allowUnknownOption()
    .action(() => {
      process.stderr.write('portcullis whois: not available in this build\n');
      process.exit(70);
    });
}
