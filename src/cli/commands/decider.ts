// `portcullis decider`: the policy brain of srt-proxy. Speaks srt-proxy's decider protocol on
// stdin/stdout (or one inherited socket with --fd); reloads the policy on SIGHUP and when the
// file changes (the last good policy stays). Exits 0 when srt-proxy ends the link, 1 when it
// breaks the protocol (srt-proxy then refuses every request).
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError, type Command } from 'commander';
import { openAuditSinkOrExit } from '../audit-options.js';
import { writePlaceholderFile } from '../placeholder-file.js';
import { startDeciderLink } from '../../decider/link.js';
import { watchPolicyFile } from '../../proxy/policy-watch.js';
import { addPolicySourceFlags, openPolicySource, type PolicySourceFlags } from '../policy-source.js';

interface DeciderCommandOptions extends PolicySourceFlags {
  audit?: string;
  reportOnly?: boolean;
  fd?: number;
  watch: boolean;
  placeholders?: string;
}

function descriptor(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 3) throw new InvalidArgumentError(`"${text}" must be an inherited descriptor number of 3 or more`);
  return Number(text);
}

function linkStreams(fd: number | undefined): { input: Readable; output: Writable } {
  if (fd === undefined) return { input: process.stdin, output: process.stdout };
  const socket = new net.Socket({ fd, readable: true, writable: true });
  return { input: socket, output: socket };
}

export function registerDecider(program: Command): void {
  const command = program.command('decider').description("decide srt-proxy's requests by the policy (its decider protocol on stdin/stdout, or --fd)");
  addPolicySourceFlags(command)
    .option('--audit <file>', 'audit log: JSON lines appended to FILE (not stdout: that carries the protocol)')
    .option('--report-only', 'allow every would-deny, recorded with decision "audit"')
    .option('--fd <n>', 'one inherited bidirectional socket instead of stdin/stdout', descriptor)
    .option('--no-watch', 'do not reload when the policy file changes (SIGHUP still reloads)')
    .option('--placeholders <file>', "write VARIABLE=placeholder lines (mode 0600) for the policy's credentials, for the sandbox runtime to inject")
    .action(async (opts: DeciderCommandOptions) => {
      if (opts.audit === '-' && opts.fd === undefined) {
        process.stderr.write('portcullis decider: --audit - would write into the protocol stream on stdout; give a file\n');
        process.exit(2);
      }
      const log = (line: string): boolean => process.stderr.write(`${line}\n`);
      const source = await openPolicySource(opts, 'portcullis decider', (line) => log(`portcullis decider: ${line}`));
      const engine = source.engine;
      if (opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, engine.credentials);
      const audit = openAuditSinkOrExit(opts.audit, 'decider');
      const reload = (): void => {
        source.reload().then(
          () => {
            audit.emit({ kind: 'reload', ok: true, policy_file: source.describe });
            log('portcullis decider: policy reloaded (hosts new to it are refused by srt-proxy until it restarts)');
          },
          (err: unknown) => {
            audit.emit({ kind: 'reload', ok: false, policy_file: source.describe, error: (err as Error).message });
            log(`portcullis decider: reload refused, previous policy stays:\n${(err as Error).message}`);
          },
        );
      };
      const watcher = opts.watch && source.watchFile !== undefined ? watchPolicyFile(source.watchFile, reload) : { close() {} };
      process.on('SIGHUP', reload);
      const link = startDeciderLink({ ...linkStreams(opts.fd), engine, audit, reportOnly: opts.reportOnly === true, log });
      const end = await link.ended;
      watcher.close();
      await source.stop();
      await audit.close();
      if (!end.ok) log(`portcullis decider: ${end.error}; link closed`);
      process.exit(end.ok ? 0 : 1);
    });
}
