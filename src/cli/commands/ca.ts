// `portcullis ca init --out DIR`: makes the CA that signs the leaves of inspected connections
// and writes DIR/ca.crt (0644) and DIR/ca.key (0600). Existing files are kept unless --force.
import { InvalidArgumentError, type Command } from 'commander';
import { createAuthority, DEFAULT_CA_DAYS } from '../../tls/ca.js';
import { CaFileError, writeAuthority } from '../../tls/ca-files.js';

interface InitOptions {
  out: string;
  force?: boolean;
  days: number;
}

function parseDays(text: string): number {
  if (!/^\d{1,4}$/.test(text) || Number(text) < 1 || Number(text) > 3650) throw new InvalidArgumentError(`"${text}" must be a number of days from 1 to 3650`);
  return Number(text);
}

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('the certificate authority for TLS inspection');
  ca.command('init')
    .description('make a CA (ECDSA P-256) and write DIR/ca.crt and DIR/ca.key (0600)')
    .requiredOption('--out <dir>', 'directory to write ca.crt and ca.key to (made 0700 if missing)')
    .option('--force', 'replace existing ca.crt and ca.key')
    .option('--days <n>', 'validity of the CA in days', parseDays, DEFAULT_CA_DAYS)
    .action(async (opts: InitOptions) => {
      try {
        const written = await writeAuthority(opts.out, await createAuthority({ validityDays: opts.days }), opts.force === true);
        process.stdout.write(
          `wrote ${written.certFile} (give it to clients to trust) and ${written.keyFile} (keep it secret; use both with proxy --ca-cert/--ca-key)\n`,
        );
      } catch (err) {
        if (!(err instanceof CaFileError)) throw err;
        process.stderr.write(`portcullis: ${err.message}\n`);
        process.exit(1);
      }
    });
}
