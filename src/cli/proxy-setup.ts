// What every process of `portcullis proxy` does first: check and load what the flags name (the
// upstream proxy, the inspection CA, the audit file, the policy), exiting 2 with the reason on
// bad input; then start the proxy on those parts. The single process, the primary of
// --workers (which only checks) and each worker (which serves) all go through here.
import type { StreamAuditSink } from '../audit/sink.js';
import type { ProxyLimits } from '../proxy/limits.js';
import { startProxy, type HostPort, type RunningProxy, type UpstreamProxy } from '../proxy/server.js';
import { upstreamProxyName } from '../proxy/upstream-proxy.js';
import { CaFileError } from '../tls/ca-files.js';
import { loadInspectionTls, type InspectionTls } from '../tls/inspection.js';
import { openAuditSinkOrExit, reportAuditHealth } from './audit-options.js';
import { openPolicySource, type OpenedPolicy } from './policy-source.js';
import type { ListeningFacts, ProxyCommandOptions } from './proxy-options.js';
import { upstreamProxyFromFlags, type UpstreamProxyFlags } from './upstream-proxy-options.js';

export interface PreparedProxy {
  upstreamProxy: UpstreamProxy | undefined;
  inspection: InspectionTls | undefined;
  audit: StreamAuditSink;
  source: OpenedPolicy;
}

export interface PrepareAs {
  /** How the process names itself on stderr after `portcullis `: `proxy`, `proxy (worker 2)`. */
  label: string;
  /** How credentials' placeholders are made (the same in every worker); at random by default. */
  placeholders?: (name: string) => string;
  /** Other processes write audit lines to the same stdout (`--audit -` with workers). */
  sharedStdout?: boolean;
}

function fail(message: string): never {
  process.stderr.write(`portcullis proxy: ${message}\n`);
  process.exit(2);
}

/** The inspection CA from --ca-cert/--ca-key (both or neither), or undefined; exits 2 on a bad file. */
async function inspectionOrExit(opts: ProxyCommandOptions): Promise<InspectionTls | undefined> {
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

function upstreamProxyOrExit(flags: UpstreamProxyFlags): UpstreamProxy | undefined {
  try {
    return upstreamProxyFromFlags(flags);
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** Checks and loads everything the flags name, in the order the single process always has. */
export async function prepareProxy(opts: ProxyCommandOptions, as: PrepareAs): Promise<PreparedProxy> {
  const upstreamProxy = upstreamProxyOrExit(opts);
  const inspection = await inspectionOrExit(opts);
  const audit = openAuditSinkOrExit(opts.audit, 'proxy', { sharedStdout: as.sharedStdout === true });
  reportAuditHealth(audit, as.label, opts.auditFailure);
  const source = await openPolicySource(opts, 'portcullis proxy', (line) => process.stderr.write(`portcullis ${as.label}: ${line}\n`), as.placeholders);
  return { upstreamProxy, inspection, audit, source };
}

/** The proxy on the prepared parts, listening where `at` says. */
export function startPrepared(p: PreparedProxy, opts: ProxyCommandOptions, at: { listen: HostPort; sniListen?: HostPort | undefined }, limits: Partial<ProxyLimits>): Promise<RunningProxy> {
  return startProxy({
    policyFile: p.source.describe,
    loadPolicy: () => p.source.reload(),
    engine: p.source.engine,
    listen: at.listen,
    ...(at.sniListen ? { sniListen: at.sniListen } : {}),
    audit: p.audit,
    auditFailure: opts.auditFailure,
    ...(opts.resolver ? { resolver: opts.resolver } : {}),
    reportOnly: opts.reportOnly === true,
    ...(opts.anchor !== undefined ? { anchorPid: opts.anchor } : {}),
    limits,
    ...(p.upstreamProxy ? { upstreamProxy: p.upstreamProxy } : {}),
    ...(p.inspection ? { inspection: p.inspection } : {}),
  });
}

/** What the "listening on" line says about this configuration, beside the addresses. */
export function listeningFacts(p: PreparedProxy, opts: ProxyCommandOptions, address: HostPort, sniAddress: HostPort | undefined): ListeningFacts {
  return {
    address,
    ...(sniAddress ? { sniAddress } : {}),
    reportOnly: opts.reportOnly === true,
    inspecting: p.inspection !== undefined,
    ...(p.upstreamProxy ? { upstreamProxy: upstreamProxyName(p.upstreamProxy) } : {}),
  };
}
