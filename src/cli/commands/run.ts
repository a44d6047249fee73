// `portcullis run`: CMD in network, PID and mount namespaces of its own, behind the proxy, the
// DNS proxy and the nft fence, as an unprivileged user; exit code is CMD's.
import { InvalidArgumentError, type Command } from 'commander';
import { UpstreamProxyAuthError } from '../../proxy/upstream-proxy-auth.js';
import { AuditFileError } from '../../audit/file.js';
import type { AuditFailureMode } from '../../audit/sink.js';
import { PolicyLoadError } from '../../policy/load.js';
import { AUDIT_FAILURE_HELP, parseAuditFailure } from '../audit-options.js';
import { parseHostPort } from '../../sandbox/upstream-resolver.js';
import { addUpstreamProxyFlags, upstreamProxyFromFlags, type UpstreamProxyFlags } from '../upstream-proxy-options.js';

interface RunOptions extends UpstreamProxyFlags {
  policy: string;
  user?: string;
  audit?: string;
  auditFailure: AuditFailureMode;
  resolver?: string;
  reportOnly?: boolean;
  live?: boolean;
  quiet?: boolean;
  fence?: boolean;
}

export function registerRun(program: Command): void {
  const command = program.command('run');
  addUpstreamProxyFlags(command)
    .description('run CMD in network, PID and mount namespaces of its own behind the proxy, the DNS proxy and the nft fence, unprivileged')
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .option('--user <user>', 'account CMD runs as (default: portcullis-sandbox, created if missing; a uid without a passwd entry gets the nogroup group)')
    .option('--audit <file>', 'append every audit event as JSON lines (created 0600, never through a symlink; - for stdout)')
    .option('--audit-failure <closed|open>', AUDIT_FAILURE_HELP, parseAuditFailure, 'closed')
    .option('--resolver <addr:port>', 'upstream DNS server (default: the first nameserver of /etc/resolv.conf)')
    .option('--report-only', 'allow everything, log what would have been denied as audit')
    .option('--live', 'print every decision as it happens (default: denials only)')
    .option('--quiet', 'print neither live decisions nor the summary')
    .option('--no-fence', 'proxy environment only: no namespace, no nft (weaker; for comparison)')
    .argument('<command...>', 'the command to run, after --')
    .action(async (command: string[], opts: RunOptions) => {
      // Loaded here, not at start-up: the other sub-commands need none of the sandbox. The
      // proxies and the policy engine are loaded by runSandbox, while it builds the network.
      const { runSandbox, RunUsageError } = await import('../../sandbox/sandbox.js');
      const { SandboxUserError } = await import('../../sandbox/user.js');
      const loadEgress = () => import('../../sandbox/egress.js');
      let code: number;
      try {
        const upstreamProxy = upstreamProxyFromFlags(opts);
        code = await runSandbox({
          policyFile: opts.policy,
          command,
          ...(opts.user !== undefined ? { user: opts.user } : {}),
          ...(opts.audit !== undefined ? { auditFile: opts.audit } : {}),
          auditFailure: opts.auditFailure,
          ...(opts.resolver !== undefined ? { resolver: parseHostPort(opts.resolver) } : {}),
          reportOnly: opts.reportOnly === true,
          live: opts.live === true,
          quiet: opts.quiet === true,
          noFence: opts.fence === false,
          startEgress: async (ctx) => (await loadEgress()).startSandboxEgress(ctx, upstreamProxy),
          loadEgress,
        });
      } catch (err) {
        process.stderr.write(`portcullis run: ${(err as Error).message}\n`);
        const usage = err instanceof InvalidArgumentError || err instanceof UpstreamProxyAuthError || err instanceof PolicyLoadError || err instanceof RunUsageError || err instanceof SandboxUserError || err instanceof AuditFileError;
        code = usage ? 2 : 70;
      }
      process.exit(code);
    });
}
