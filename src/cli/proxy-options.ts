// The options of `portcullis proxy` and what is worked out from them alone: addresses, limits,
// the worker count, the "listening on" line. Pure but for os.availableParallelism().
import os from 'node:os';
import { InvalidArgumentError } from 'commander';
import type { AuditFailureMode } from '../audit/sink.js';
import { DEFAULT_LIMITS, type ProxyLimits } from '../proxy/limits.js';
import type { HostPort } from '../proxy/server.js';
import type { PolicySourceFlags } from './policy-source.js';
import type { UpstreamProxyFlags } from './upstream-proxy-options.js';

export interface ProxyCommandOptions extends PolicySourceFlags, UpstreamProxyFlags {
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
  workers: number;
}

/** `ADDR:PORT`; port 0 lets the system choose (the chosen one is printed). */
export function parseListen(text: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new InvalidArgumentError(`"${text}" is not ADDR:PORT (IPv6 as [::1]:PORT)`);
  return { host: (match[1] ?? match[2])!, port };
}

export function positive(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new InvalidArgumentError(`"${text}" must be a positive integer`);
  return Number(text);
}

/** More processes than this is a typo, not a machine (each worker holds its own engine and caches). */
const MAX_WORKERS = 256;

/** `--workers N|auto`: a count from 1 up, or `auto` = one per core the process may use. */
export function parseWorkers(text: string): number {
  if (text === 'auto') return os.availableParallelism();
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > MAX_WORKERS) {
    throw new InvalidArgumentError(`"${text}" must be auto or a whole number of processes from 1 to ${MAX_WORKERS}`);
  }
  return Number(text);
}

/** The limits the flags set (the rest keep their defaults). */
export function limitsFrom(opts: ProxyCommandOptions): Partial<ProxyLimits> {
  const limits: Partial<ProxyLimits> = {};
  if (opts.maxHeaderBytes) limits.maxHeaderBytes = opts.maxHeaderBytes;
  if (opts.headerTimeout) limits.headerTimeoutMs = opts.headerTimeout;
  if (opts.connectTimeout) limits.connectTimeoutMs = opts.connectTimeout;
  if (opts.idleTimeout) limits.idleTimeoutMs = opts.idleTimeout;
  if (opts.maxConnections) limits.maxConnections = opts.maxConnections;
  if (opts.helloTimeout) limits.helloTimeoutMs = opts.helloTimeout;
  return limits;
}

/**
 * One worker's share of the connection limit: the limit is the proxy's, across its workers, so
 * each takes an equal part, rounded up (the kernel spreads connections, not always evenly).
 */
export function workerLimits(limits: Partial<ProxyLimits>, workers: number): Partial<ProxyLimits> {
  return { ...limits, maxConnections: Math.ceil((limits.maxConnections ?? DEFAULT_LIMITS.maxConnections) / workers) };
}

export function show(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface ListeningFacts {
  address: HostPort;
  sniAddress?: HostPort;
  reportOnly: boolean;
  inspecting: boolean;
  /** `host:port` of the upstream proxy, if any. */
  upstreamProxy?: string;
  /** Worker processes, when more than one. */
  workers?: number;
}

/** The line callers parse to learn the port: printed once, when the proxy serves. */
export function listeningLine(f: ListeningFacts): string {
  return (
    `portcullis proxy listening on ${show(f.address)}${f.sniAddress ? ` (sni ${show(f.sniAddress)})` : ''}` +
    `${f.reportOnly ? ' in report-only mode' : ''}${f.inspecting ? ', inspecting TLS' : ''}` +
    `${f.upstreamProxy ? `, on through the upstream proxy ${f.upstreamProxy}` : ''}${f.workers && f.workers > 1 ? `, ${f.workers} workers` : ''}\n`
  );
}
