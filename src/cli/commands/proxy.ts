// `portcullis proxy`: the egress proxy in the foreground. Reloads the policy on SIGHUP and when
// the file changes; reopens the audit file on SIGUSR1 (log rotation); on SIGTERM/SIGINT stops
// accepting, flushes the audit sink and exits 0.
import { InvalidArgumentError, type Command } from 'commander';
import { writePlaceholderFile } from '../placeholder-file.js';
import type { AuditFailureMode } from '../../audit/sink.js';
import { DEFAULT_LIMITS, type ProxyLimits } from '../../proxy/limits.js';
import { watchPolicyFile } from '../../proxy/policy-watch.js';
import { startProxy, type HostPort } from '../../proxy/server.js';
import { upstreamProxyName } from '../../proxy/upstream-proxy.js';
import { CaFileError } from '../../tls/ca-files.js';
import { loadInspectionTls, type InspectionTls } from '../../tls/inspection.js';
import { collect } from '../repeatable.js';
import { AUDIT_FAILURE_HELP, openAuditSinkOrExit, parseAuditFailure, reportAuditHealth, reportUnwritten } from '../audit-options.js';
import { addPolicySourceFlags, openPolicySource, type PolicySourceFlags } from '../policy-source.js';
import { addUpstreamProxyFlags, upstreamProxyFromFlags, type UpstreamProxyFlags } from '../upstream-proxy-options.js';

interface ProxyCommandOptions extends PolicySourceFlags, UpstreamProxyFlags {
  listen: HostPort;
  sniListen?: HostPort;
  audit?: string;
  auditFailure: AuditFailureMode;
  resolver?: HostPort;
  reportOnly?: boolean;
  anchor?: number;
  watch: boolean;
  maxHeaderBytes?: number;
  headerTimeout?: number;
  connectTimeout?: number;
  idleTimeout?: number;
  maxConnections?: number;
  helloTimeout?: number;
  placeholders?: string;
  caCert?: string;
  caKey?: string;
  upstreamCa?: string[];
}

/** The inspection CA from --ca-cert/--ca-key (both or neither), or undefined; exits 2 on a bad file. */
async function inspectionOrExit(opts: ProxyCommandOptions): Promise<InspectionTls | undefined> {
  const fail = (message: string): never => {
    process.stderr.write(`portcullis proxy: ${message}\n`);
    process.exit(2);
  };
  if ((opts.caCert === undefined) !== (opts.caKey === undefined)) fail('--ca-cert and --ca-key go together (TLS inspection needs both)');
  if (opts.caCert === undefined || opts.caKey === undefined) {
    if (opts.upstreamCa?.length) fail('--upstream-ca is for inspected connections: give --ca-cert and --ca-key too');
    return undefined;
  }
  try {
    return await loadInspectionTls(opts.caCert, opts.caKey, { upstreamCaFiles: opts.upstreamCa ?? [] });
  } catch (err) {
    if (err instanceof CaFileError) return fail(err.message);
    throw err;
  }
}

/** `ADDR:PORT`; port 0 lets the system choose (the chosen one is printed). */
function parseListen(text: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new InvalidArgumentError(`"${text}" is not ADDR:PORT (IPv6 as [::1]:PORT)`);
  return { host: (match[1] ?? match[2])!, port };
}

function positive(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new InvalidArgumentError(`"${text}" must be a positive integer`);
  return Number(text);
}

function show(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function upstreamProxyOrExit(flags: UpstreamProxyFlags): ReturnType<typeof upstreamProxyFromFlags> {
  try {
    return upstreamProxyFromFlags(flags);
  } catch (err) {
    process.stderr.write(`portcullis proxy: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

/** The limits the flags set (the rest keep their defaults). */
function limitsFrom(opts: ProxyCommandOptions): Partial<ProxyLimits> {
  const limits: Partial<ProxyLimits> = {};
  if (opts.maxHeaderBytes) limits.maxHeaderBytes = opts.maxHeaderBytes;
  if (opts.headerTimeout) limits.headerTimeoutMs = opts.headerTimeout;
  if (opts.connectTimeout) limits.connectTimeoutMs = opts.connectTimeout;
  if (opts.idleTimeout) limits.idleTimeoutMs = opts.idleTimeout;
  if (opts.maxConnections) limits.maxConnections = opts.maxConnections;
  if (opts.helloTimeout) limits.helloTimeoutMs = opts.helloTimeout;
  return limits;
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
    .option('--max-connections <n>', `concurrent client connections (default ${DEFAULT_LIMITS.maxConnections})`, positive)
    .option('--hello-timeout <ms>', `time allowed for a TLS ClientHello on the SNI listener (default ${DEFAULT_LIMITS.helloTimeoutMs})`, positive)
    .option('--placeholders <file>', 'write VARIABLE=placeholder lines (mode 0600) for the policy\'s credentials, for a runtime to put in its sandbox')
    .option('--ca-cert <file>', 'CA certificate (PEM) for TLS inspection of endpoints with tls: inspect (portcullis ca init makes one)')
    .option('--ca-key <file>', 'private key of --ca-cert (PEM, mode 0600)')
    .option('--upstream-ca <file>', 'also trust this CA (PEM) for the upstreams of inspected connections, besides the system roots (repeatable)', collect)
    .action(async (opts: ProxyCommandOptions) => {
      const upstreamProxy = upstreamProxyOrExit(opts);
      const inspection = await inspectionOrExit(opts);
      const audit = openAuditSinkOrExit(opts.audit, 'proxy');
      reportAuditHealth(audit, 'proxy', opts.auditFailure);
      const source = await openPolicySource(opts, 'portcullis proxy', (line) => process.stderr.write(`portcullis proxy: ${line}\n`));
      const engine = source.engine;
      if (opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, engine.credentials);
      const limits = limitsFrom(opts);
      const proxy = await startProxy({
        policyFile: source.describe,
        loadPolicy: () => source.reload(),
        engine,
        listen: opts.listen,
        ...(opts.sniListen ? { sniListen: opts.sniListen } : {}),
        audit,
        auditFailure: opts.auditFailure,
        ...(opts.resolver ? { resolver: opts.resolver } : {}),
        reportOnly: opts.reportOnly === true,
        ...(opts.anchor !== undefined ? { anchorPid: opts.anchor } : {}),
        limits,
        ...(upstreamProxy ? { upstreamProxy } : {}),
        ...(inspection ? { inspection } : {}),
      });
      source.onChange(() => proxy.policyChanged());
      process.stderr.write(
        `portcullis proxy listening on ${show(proxy.address)}${proxy.sniAddress ? ` (sni ${show(proxy.sniAddress)})` : ''}${opts.reportOnly ? ' in report-only mode' : ''}${inspection ? ', inspecting TLS' : ''}${upstreamProxy ? `, on through the upstream proxy ${upstreamProxyName(upstreamProxy)}` : ''}\n`,
      );
      const reload = (): void => {
        void proxy.reload().then((r) => {
          if (r.ok && opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, engine.credentials, false);
          process.stderr.write(r.ok ? `portcullis proxy: policy reloaded (${r.closed} connection(s) closed)\n` : `portcullis proxy: reload refused, previous policy stays:\n${r.error ?? ''}\n`);
        });
      };
      const watcher = opts.watch && source.watchFile !== undefined ? watchPolicyFile(source.watchFile, reload) : { close() {} };
      process.on('SIGHUP', reload);
      process.on('SIGUSR1', () => audit.reopen());
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        watcher.close();
        void (async () => {
          await proxy.close();
          await source.stop();
          await audit.close();
          reportUnwritten(audit, 'proxy');
          process.exit(0);
        })();
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
