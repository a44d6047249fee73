// `portcullis eval`: one decision, printed as JSON. No --binary means the `<unresolved>` sentinel.
// A --path with no canonical form is a usage error (exit 2), as the proxy answers it with 400:
// no decision is ever made on it.
import { InvalidArgumentError, type Command } from 'commander';
import { canonicalRequestPath } from '../../http/request-path.js';
import { buildDecisionInput } from '../../engine/input.js';
import { engineOrExit } from '../policy-or-exit.js';
import { collect, parsePort } from '../repeatable.js';

interface EvalOptions {
  policy: string;
  host: string;
  port: number;
  binary?: string;
  ancestor: string[];
  address?: string[];
  method?: string;
  path?: string;
  rego?: string[];
}

/** The path in the canonical form the proxy decides and sends upstream. */
function parseRequestPath(text: string): string {
  const canonical = canonicalRequestPath(text);
  if (!canonical.ok) throw new InvalidArgumentError(`the proxy refuses this path with 400: ${canonical.message}`);
  return canonical.path;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('print the decision for one request as JSON')
    .requiredOption('--policy <file>', 'policy file (YAML)')
    .requiredOption('--host <host>', 'destination host')
    .requiredOption('--port <port>', 'destination port', parsePort)
    .option('--binary <path>', 'executable of the caller (omitted: <unresolved>)')
    .option('--ancestor <path>', 'executable of an ancestor process (repeatable)', collect, [])
    .option('--address <ip>', 'a resolved address of the host, for allowed_ips (repeatable)', collect)
    .option('--method <method>', 'HTTP method, for protocol: rest endpoints')
    .option('--path <path>', 'HTTP path (with query), for protocol: rest endpoints; decided in canonical form', parseRequestPath)
    .option('--rego <dir>', 'directory of extension Rego (repeatable)', collect)
    .action(async (opts: EvalOptions) => {
      const engine = await engineOrExit(opts.policy, opts.rego ?? []);
      const input = buildDecisionInput({
        host: opts.host,
        port: opts.port,
        binary: opts.binary ?? null,
        ancestors: opts.ancestor,
        ...(opts.address ? { addresses: opts.address } : {}),
        ...(opts.method !== undefined ? { method: opts.method } : {}),
        ...(opts.path !== undefined ? { path: opts.path } : {}),
      });
      const { allow, decision, reason, policy, inspect } = engine.decide(input);
      // `inspect` comes with allows and audits: whether the tunnel is to be TLS-inspected.
      process.stdout.write(`${JSON.stringify({ allow, decision, reason, policy, ...(inspect !== undefined ? { inspect } : {}) })}\n`);
    });
}
