// The subset of OPA's configuration file that portcullis applies, with OPA's key names, so one
// file serves an OPA sidecar and portcullis alike. Keys OPA has that portcullis does not apply
// are warned about by name; keys OPA does not have are errors (a typo must not pass). Pure.
import { parse as parseYaml } from 'yaml';
import { isJwsAlgorithm, type JwsAlgorithm } from './jws.js';

export interface ServiceConfig {
  name: string;
  url: string;
  headers: Record<string, string>;
  /** `credentials.bearer`: `Authorization: <scheme> <token>`. */
  bearer?: { token: string; scheme: string };
  /** `tls.ca_cert`: a PEM file of CAs trusted for this service (besides the system's). */
  caCertFile?: string;
}

export interface BundleSourceConfig {
  name: string;
  service: string;
  resource: string;
  minDelaySeconds: number;
  maxDelaySeconds: number;
  longPollingTimeoutSeconds?: number;
  signing?: { keyId?: string; scope?: string; excludeFiles: string[] };
  persist: boolean;
  sizeLimitBytes: number;
}

export interface KeyConfig {
  algorithm: JwsAlgorithm;
  key: string;
  scope?: string;
}

export interface DecisionLogConfig {
  service: string;
  resource: string;
  uploadSizeLimitBytes: number;
  minDelaySeconds: number;
  maxDelaySeconds: number;
  /** Bytes of (uncompressed) events held before the oldest are dropped. */
  bufferSizeLimitBytes: number;
  /** JSON pointers into each event whose values are erased before upload (e.g. `/input/exec/ancestors`). */
  erase: string[];
}

export interface StatusConfig {
  service: string;
}

export interface PortcullisOpaConfig {
  services: Record<string, ServiceConfig>;
  bundles: BundleSourceConfig[];
  keys: Record<string, KeyConfig>;
  decisionLogs?: DecisionLogConfig;
  status?: StatusConfig;
  labels: Record<string, string>;
  persistenceDirectory?: string;
  warnings: string[];
}

export class OpaConfigError extends Error {
  override name = 'OpaConfigError';
}

/** Keys OPA knows, per section, that portcullis does not apply (warned about, never an error). */
const NOT_APPLIED: Record<string, string[]> = {
  '': ['discovery', 'plugins', 'default_decision', 'default_authorization_decision', 'caching', 'nd_builtin_cache', 'distributed_tracing', 'server', 'storage', 'extra'],
  service: ['type', 'response_header_timeout_seconds', 'allow_insecure_tls', 'keys'],
  credentials: ['client_tls', 'oauth2', 's3_signing', 'gcp_metadata', 'azure_managed_identity', 'plugin'],
  tls: ['system_ca_required', 'system_certificate_pool'],
  bundle: ['trigger'],
  signing: [],
  key: ['private_key'],
  decision_logs: ['console', 'partition_name', 'mask_decision', 'drop_decision', 'plugin', 'request_context', 'nd_builtin_cache'],
  reporting: ['buffer_type', 'max_decisions_per_second', 'trigger'],
  status: ['console', 'partition_name', 'prometheus', 'prometheus_config', 'plugin', 'trigger'],
};

function object(value: unknown, where: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new OpaConfigError(`${where} must be a mapping`);
  return value as Record<string, unknown>;
}

/** Checks a section's keys: applied ones pass, OPA's others warn, anything else is an error. */
function keysOf(section: Record<string, unknown>, kind: string, applied: string[], where: string, warnings: string[]): void {
  for (const key of Object.keys(section)) {
    if (applied.includes(key)) continue;
    if (NOT_APPLIED[kind]?.includes(key)) warnings.push(`${where}${key}: an OPA setting portcullis does not apply (ignored)`);
    else throw new OpaConfigError(`${where}${key}: unknown key (not an OPA configuration key)`);
  }
}

function str(value: unknown, where: string, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || value === '') throw new OpaConfigError(`${where} must be a non-empty string`);
  return value;
}

function num(value: unknown, where: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new OpaConfigError(`${where} must be a non-negative number`);
  return value;
}

function parseService(name: string, raw: unknown, warnings: string[]): ServiceConfig {
  const where = `services.${name}.`;
  const s = object(raw, `services.${name}`);
  keysOf(s, 'service', ['name', 'url', 'headers', 'credentials', 'tls'], where, warnings);
  const out: ServiceConfig = { name, url: str(s.url, `${where}url`).replace(/\/+$/, ''), headers: {} };
  if (!/^https?:\/\//.test(out.url)) throw new OpaConfigError(`${where}url must be an http:// or https:// URL`);
  for (const [k, v] of Object.entries(s.headers === undefined ? {} : object(s.headers, `${where}headers`))) out.headers[k] = str(v, `${where}headers.${k}`);
  if (s.credentials !== undefined) {
    const c = object(s.credentials, `${where}credentials`);
    keysOf(c, 'credentials', ['bearer'], `${where}credentials.`, warnings);
    if (c.bearer !== undefined) {
      const b = object(c.bearer, `${where}credentials.bearer`);
      keysOf(b, 'bearer', ['token', 'scheme'], `${where}credentials.bearer.`, warnings);
      out.bearer = { token: str(b.token, `${where}credentials.bearer.token`), scheme: str(b.scheme, `${where}credentials.bearer.scheme`, 'Bearer') };
    }
  }
  if (s.tls !== undefined) {
    const t = object(s.tls, `${where}tls`);
    keysOf(t, 'tls', ['ca_cert'], `${where}tls.`, warnings);
    if (t.ca_cert !== undefined) out.caCertFile = str(t.ca_cert, `${where}tls.ca_cert`);
  }
  return out;
}

function parseServices(raw: unknown, warnings: string[]): Record<string, ServiceConfig> {
  const out: Record<string, ServiceConfig> = {};
  if (raw === undefined) return out;
  const entries: Array<[string, unknown]> = Array.isArray(raw) ? raw.map((s, i) => [str(object(s, `services[${i}]`).name, `services[${i}].name`), s]) : Object.entries(object(raw, 'services'));
  for (const [name, s] of entries) out[name] = parseService(name, s, warnings);
  return out;
}

function parseBundle(name: string, raw: unknown, services: Record<string, ServiceConfig>, warnings: string[]): BundleSourceConfig {
  const where = `bundles.${name}.`;
  const b = object(raw, `bundles.${name}`);
  keysOf(b, 'bundle', ['service', 'resource', 'polling', 'signing', 'persist', 'size_limit_bytes'], where, warnings);
  const only = Object.keys(services).length === 1 ? Object.keys(services)[0] : undefined;
  const service = str(b.service, `${where}service`, only);
  if (!services[service]) throw new OpaConfigError(`${where}service: no service named "${service}"`);
  const polling = b.polling === undefined ? {} : object(b.polling, `${where}polling`);
  keysOf(polling, 'polling', ['min_delay_seconds', 'max_delay_seconds', 'long_polling_timeout_seconds'], `${where}polling.`, warnings);
  const out: BundleSourceConfig = {
    name,
    service,
    resource: str(b.resource, `${where}resource`, `bundles/${name}`),
    minDelaySeconds: num(polling.min_delay_seconds, `${where}polling.min_delay_seconds`, 60),
    maxDelaySeconds: num(polling.max_delay_seconds, `${where}polling.max_delay_seconds`, 120),
    persist: b.persist === true,
    sizeLimitBytes: num(b.size_limit_bytes, `${where}size_limit_bytes`, 1024 * 1024 * 1024),
  };
  if (out.maxDelaySeconds < out.minDelaySeconds) throw new OpaConfigError(`${where}polling: max_delay_seconds is below min_delay_seconds`);
  if (polling.long_polling_timeout_seconds !== undefined) out.longPollingTimeoutSeconds = num(polling.long_polling_timeout_seconds, `${where}polling.long_polling_timeout_seconds`, 0);
  if (b.signing !== undefined) {
    const s = object(b.signing, `${where}signing`);
    keysOf(s, 'signing', ['keyid', 'scope', 'exclude_files'], `${where}signing.`, warnings);
    out.signing = {
      ...(s.keyid !== undefined ? { keyId: str(s.keyid, `${where}signing.keyid`) } : {}),
      ...(s.scope !== undefined ? { scope: str(s.scope, `${where}signing.scope`) } : {}),
      excludeFiles: Array.isArray(s.exclude_files) ? s.exclude_files.map((f, i) => str(f, `${where}signing.exclude_files[${i}]`)) : [],
    };
  }
  return out;
}

function parseKeys(raw: unknown, warnings: string[]): Record<string, KeyConfig> {
  const out: Record<string, KeyConfig> = {};
  for (const [id, value] of Object.entries(raw === undefined ? {} : object(raw, 'keys'))) {
    const k = object(value, `keys.${id}`);
    keysOf(k, 'key', ['algorithm', 'key', 'scope'], `keys.${id}.`, warnings);
    const algorithm = str(k.algorithm, `keys.${id}.algorithm`, 'RS256');
    if (!isJwsAlgorithm(algorithm)) throw new OpaConfigError(`keys.${id}.algorithm: "${algorithm}" is not supported`);
    out[id] = { algorithm, key: str(k.key, `keys.${id}.key`), ...(k.scope !== undefined ? { scope: str(k.scope, `keys.${id}.scope`) } : {}) };
  }
  return out;
}

function parseDecisionLogs(raw: unknown, services: Record<string, ServiceConfig>, warnings: string[]): DecisionLogConfig {
  const d = object(raw, 'decision_logs');
  keysOf(d, 'decision_logs', ['service', 'resource', 'reporting', 'erase'], 'decision_logs.', warnings);
  const r = d.reporting === undefined ? {} : object(d.reporting, 'decision_logs.reporting');
  keysOf(r, 'reporting', ['upload_size_limit_bytes', 'min_delay_seconds', 'max_delay_seconds', 'buffer_size_limit_bytes'], 'decision_logs.reporting.', warnings);
  const only = Object.keys(services).length === 1 ? Object.keys(services)[0] : undefined;
  const service = str(d.service, 'decision_logs.service', only);
  if (!services[service]) throw new OpaConfigError(`decision_logs.service: no service named "${service}"`);
  const erase = Array.isArray(d.erase) ? d.erase.map((p, i) => str(p, `decision_logs.erase[${i}]`)) : [];
  for (const pointer of erase) if (!pointer.startsWith('/input/')) throw new OpaConfigError(`decision_logs.erase: "${pointer}" must be a JSON pointer under /input/`);
  return {
    service,
    resource: str(d.resource, 'decision_logs.resource', '/logs'),
    uploadSizeLimitBytes: num(r.upload_size_limit_bytes, 'decision_logs.reporting.upload_size_limit_bytes', 32_768),
    minDelaySeconds: num(r.min_delay_seconds, 'decision_logs.reporting.min_delay_seconds', 300),
    maxDelaySeconds: num(r.max_delay_seconds, 'decision_logs.reporting.max_delay_seconds', 600),
    bufferSizeLimitBytes: num(r.buffer_size_limit_bytes, 'decision_logs.reporting.buffer_size_limit_bytes', 64 * 1024 * 1024),
    erase,
  };
}

export function parseOpaConfig(text: string, file: string): PortcullisOpaConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new OpaConfigError(`${file}: not YAML or JSON: ${(err as Error).message}`);
  }
  try {
    const top = object(raw ?? {}, 'the configuration');
    const warnings: string[] = [];
    keysOf(top, '', ['services', 'bundles', 'keys', 'decision_logs', 'status', 'labels', 'persistence_directory'], '', warnings);
    const services = parseServices(top.services, warnings);
    const bundles = Object.entries(top.bundles === undefined ? {} : object(top.bundles, 'bundles')).map(([name, b]) => parseBundle(name, b, services, warnings));
    if (bundles.length !== 1) throw new OpaConfigError(`bundles: portcullis takes exactly one bundle (the policy), found ${bundles.length}`);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(top.labels === undefined ? {} : object(top.labels, 'labels'))) labels[k] = str(v, `labels.${k}`);
    const config: PortcullisOpaConfig = { services, bundles, keys: parseKeys(top.keys, warnings), labels, warnings };
    if (top.decision_logs !== undefined) config.decisionLogs = parseDecisionLogs(top.decision_logs, services, warnings);
    if (top.status !== undefined) {
      const s = object(top.status, 'status');
      keysOf(s, 'status', ['service'], 'status.', warnings);
      const service = str(s.service, 'status.service', Object.keys(services).length === 1 ? Object.keys(services)[0] : undefined);
      if (!services[service]) throw new OpaConfigError(`status.service: no service named "${service}"`);
      config.status = { service };
    }
    if (top.persistence_directory !== undefined) config.persistenceDirectory = str(top.persistence_directory, 'persistence_directory');
    return config;
  } catch (err) {
    if (err instanceof OpaConfigError) throw new OpaConfigError(`${file}: ${err.message}`);
    throw err;
  }
}
