// `portcullis proxy`: the egress proxy in the foreground, in one process (./proxy-single.ts) or,
// with --workers N, in N worker processes under a primary (./proxy-workers.ts, ./proxy-worker.ts).
// Either way it reloads the policy on SIGHUP and when the file changes, reopens the audit file on
// SIGUSR1 (log rotation), and on SIGTERM/SIGINT stops accepting, flushes the audit and exits 0.
import cluster from 'node:cluster';
import type { Command } from 'commander';
import { DEFAULT_LIMITS } from '../../proxy/limits.js';
import { collect } from '../repeatable.js';
import { AUDIT_FAILURE_HELP, parseAuditFailure } from '../audit-options.js';
import { addPolicySourceFlags } from '../policy-source.js';
import { parseListen, parseWorkers, positive, type ProxyCommandOptions } from '../proxy-options.js';
import { serveInOneProcess } from '../proxy-single.js';
import { serveAsWorker } from '../proxy-worker.js';
import { serveWithWorkers } from '../proxy-workers.js';
import { addUpstreamProxyFlags } from '../upstream-proxy-options.js';
import { WORKER_ENV } from '../worker-protocol.js';

const WORKERS_HELP =
  'processes that serve, sharing the listening ports (auto = one per core; 1 = this process alone); ' +
  '--max-connections is the total, split evenly among them; not with --config';

/** This process's worker number when it is a worker of `proxy --workers N`, else undefined. */
function workerIndex(): number | undefined {
  const index = Number(process.env[WORKER_ENV]);
  // Its own children (helpers) need not know.
  delete process.env[WORKER_ENV];
  return cluster.isWorker && Number.isInteger(index) && index > 0 ? index : undefined;
}

export function registerProxy(program: Command): void {
  const command = program.command('proxy').description('run the egress proxy (CONNECT, forward HTTP, SNI) in the foreground');
  addUpstreamProxyFlags(addPolicySourceFlags(command))
    .requiredOption('--listen <addr:port>', 'address for CONNECT and forward HTTP', parseListen)
    .option('--sni-listen <addr:port>', 'address for transparent TLS (traffic redirected by nft)', parseListen)
    .option('--audit <file|->', 'audit log: JSON lines appended to FILE (created 0600, never through a symlink), or - for stdout')
    .option('--audit-failure <closed|open>', AUDIT_FAILURE_HELP, parseAuditFailure, 'closed')
    .option('--resolver <addr:port>', 'DNS server for upstream lookups (default: the system resolver)', parseListen)
    .option('--report-only', 'let every would-deny through, recorded with decision "audit"')
    .option('--anchor <pid>', 'first process of the sandbox the clients live in (its network namespace)', positive)
    .option('--no-watch', 'do not reload when the policy or bundle file changes (SIGHUP still reloads)')
    .option('--max-header-bytes <n>', `largest request head (default ${DEFAULT_LIMITS.maxHeaderBytes})`, positive)
    .option('--header-timeout <ms>', `time allowed for a request head (default ${DEFAULT_LIMITS.headerTimeoutMs})`, positive)
    .option('--connect-timeout <ms>', `upstream connect timeout (default ${DEFAULT_LIMITS.connectTimeoutMs})`, positive)
    .option('--idle-timeout <ms>', `idle tunnel timeout (default ${DEFAULT_LIMITS.idleTimeoutMs})`, positive)
    .option('--max-connections <n>', `concurrent client connections, across all workers (default ${DEFAULT_LIMITS.maxConnections})`, positive)
    .option('--hello-timeout <ms>', `time allowed for a TLS ClientHello on the SNI listener (default ${DEFAULT_LIMITS.helloTimeoutMs})`, positive)
    .option('--placeholders <file>', 'write VARIABLE=placeholder lines (mode 0600) for the policy\'s credentials, for a runtime to put in its sandbox')
    .option('--ca-cert <file>', 'CA certificate (PEM) for TLS inspection of endpoints with tls: inspect (portcullis ca init makes one)')
    .option('--ca-key <file>', 'private key of --ca-cert (PEM, mode 0600)')
    .option('--upstream-ca <file>', 'also trust this CA (PEM) for the upstreams of inspected connections, besides the system roots (repeatable)', collect)
    .option('--workers <n|auto>', WORKERS_HELP, parseWorkers, 1)
    .action(async (opts: ProxyCommandOptions) => {
      const index = workerIndex();
      if (index !== undefined) await serveAsWorker(opts, index);
      else if (opts.workers > 1) await serveWithWorkers(opts);
      else await serveInOneProcess(opts);
    });
}
