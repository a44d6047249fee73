// `portcullis run`: CMD in network, PID and mount namespaces of its own, behind the proxy, the
// DNS proxy and the nft fence, as an unprivileged user; exit code is CMD's.
import { InvalidArgumentError, type Command } from 'commander';
import { UpstreamProxyAuthError } from '../../proxy/upstream-proxy-auth.js';
import { AuditFileError } from '../../audit/file.js';
import type { AuditFailureMode } from '../../audit/sink.js';
import { PolicyLoadError } from '../../policy/load.js';
import { AUDIT_FAILURE_HELP, parseAuditFailure } from '../audit-options.js';
import { readFile } from 'node:fs/promises';
import { readBundle } from '../../bundle/read.js';
import { addVerificationFlags, verificationOptions, type VerificationFlags } from '../bundle-options.js';
import { collect } from '../repeatable.js';
import { parseHostPort } from '../../sandbox/upstream-resolver.js';
import { addUpstreamProxyFlags, upstreamProxyFromFlags, type UpstreamProxyFlags } from '../upstream-proxy-options.js';

interface RunOptions extends VerificationFlags, UpstreamProxyFlags {
  policy?: string;
  bundle?: string;
  user?: string;
  audit?: string;
  auditFailure: AuditFailureMode;
  resolver?: string;
  reportOnly?: boolean;
  live?: boolean;
  quiet?: boolean;
  fence?: boolean;
  caCert?: string;
  caKey?: string;
  upstreamCa?: string[];
}

/** `--ca-cert` and `--ca-key` come together or not at all. */
function caFiles(opts: RunOptions): { certFile: string; keyFile: string } | undefined {
  if (opts.caCert === undefined && opts.caKey === undefined) return undefined;
  if (opts.caCert === undefined || opts.caKey === undefined) throw new InvalidArgumentError('--ca-cert and --ca-key go together: give both, or neither for a CA made for this run');
  return { certFile: opts.caCert, keyFile: opts.caKey };
}

/** The policy: a YAML file, or a built bundle (verified when a key is given). */
async function policySource(opts: RunOptions): Promise<{ policyFile: string; compiled?: { wasm: Buffer; data: import('../../policy/types.js').PolicyData } }> {
  if ((opts.policy === undefined) === (opts.bundle === undefined)) throw new InvalidArgumentError('give exactly one of --policy FILE or --bundle FILE');
  if (opts.policy !== undefined) return { policyFile: opts.policy };
  const bundle = opts.bundle!;
  try {
    const contents = await readBundle(await readFile(bundle), verificationOptions(opts));
    return { policyFile: bundle, compiled: { wasm: contents.wasm, data: contents.data } };
  } catch (err) {
    throw new InvalidArgumentError(`${bundle}: ${(err as Error).message}`);
  }
}

export function registerRun(program: Command): void {
  const command = program.command('run');
  addUpstreamProxyFlags(command)
    .description('run CMD in network, PID and mount namespaces of its own behind the proxy, the DNS proxy and the nft fence, unprivileged')
    .option('--policy <file>', 'policy file (YAML)')
    .option('--bundle <file>', 'policy from a bundle built by `portcullis build` (or opa build)');
  addVerificationFlags(command)
    .option('--user <user>', 'account CMD runs as (default: portcullis-sandbox, created if missing; a uid without a passwd entry gets the nogroup group)')
    .option('--audit <file>', 'append every audit event as JSON lines (created 0600, never through a symlink; - for stdout)')
    .option('--audit-failure <closed|open>', AUDIT_FAILURE_HELP, parseAuditFailure, 'closed')
    .option('--resolver <addr:port>', 'upstream DNS server (default: the first nameserver of /etc/resolv.conf)')
    .option('--report-only', 'allow everything, log what would have been denied as audit')
    .option('--live', 'print every decision as it happens (default: denials only)')
    .option('--quiet', 'print neither live decisions nor the summary')
    .option('--no-fence', 'proxy environment only: no namespace, no nft (weaker; for comparison)')
    .option('--ca-cert <file>', 'CA certificate for TLS inspection (with --ca-key; default: a CA made for this run, its key only in memory)')
    .option('--ca-key <file>', "the CA's private key (mode 0600, not the sandbox user's; it never enters the sandbox)")
    .option('--upstream-ca <file>', 'PEM CA certificate(s) trusted for upstreams besides the system roots, by the proxy and by CMD (repeatable)', collect)
    .argument('<command...>', 'the command to run, after --')
    .action(async (command: string[], opts: RunOptions) => {
      // Loaded here, not at start-up: the other sub-commands need none of the sandbox. The
      // proxies and the policy engine are loaded by runSandbox, while it builds the network.
      const { runSandbox, RunUsageError } = await import('../../sandbox/sandbox.js');
      const { SandboxUserError } = await import('../../sandbox/user.js');
      const loadEgress = () => import('../../sandbox/egress.js');
      let code: number;
      try {
        const ca = caFiles(opts);
        const upstreamProxy = upstreamProxyFromFlags(opts);
        code = await runSandbox({
          ...(await policySource(opts)),
          command,
          ...(opts.user !== undefined ? { user: opts.user } : {}),
          ...(opts.audit !== undefined ? { auditFile: opts.audit } : {}),
          auditFailure: opts.auditFailure,
          ...(opts.resolver !== undefined ? { resolver: parseHostPort(opts.resolver) } : {}),
          reportOnly: opts.reportOnly === true,
          live: opts.live === true,
          quiet: opts.quiet === true,
          noFence: opts.fence === false,
          ...(ca ? { ca } : {}),
          upstreamCaFiles: opts.upstreamCa ?? [],
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
