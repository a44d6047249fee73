// Pure policy validation and normalisation: a parsed YAML value in, the normalised policies or
// a list of problems out. Each problem carries the path of the offending node so the caller can
// turn it into file:line:col.
import type { ErrorObject } from 'ajv';
import { parseBinaryPattern } from './binary-pattern.js';
import { CREDENTIAL_NAME, parseCredentialSource, type CredentialSource } from '../credentials/source.js';
import { parseAllowedIp } from './cidr.js';
import { parseHostPattern } from './host-pattern.js';
// schema.ts compiled by Ajv at build time (scripts/generate-structure-check.mjs).
import { checkStructure } from '../generated/structure-check.js';
import type { Endpoint, L7Rule, Policy } from './types.js';

export type NodePath = Array<string | number>;

export interface Problem {
  path: NodePath;
  /** Point at the key of the last path element rather than its value (unknown keys). */
  atKey?: boolean;
  message: string;
}

/** Methods each `access` preset allows, on every path. */
export const ACCESS_PRESETS: Record<string, string[]> = {
  'read-only': ['GET', 'HEAD', 'OPTIONS'],
  'read-write': ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'],
  full: ['*'],
};

const METHOD = /^([A-Z]+|\*)$/;

function pathOf(instancePath: string): NodePath {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

function describe(path: NodePath): string {
  return path.length === 0 ? 'the file' : `"${String(path[path.length - 1])}"`;
}

function structureProblem(error: ErrorObject): Problem | null {
  const path = pathOf(error.instancePath);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      return { path: [...path, key], atKey: true, message: `unknown key "${key}" in ${describe(path)}; a misspelt key would change who may reach what, so it is an error` };
    }
    case 'required':
      return { path, message: `${describe(path)} is missing the required key "${String(params.missingProperty)}"` };
    case 'type':
      return { path, message: `${describe(path)} must be ${String(params.type).replace(',', ' or ')}` };
    case 'minimum':
    case 'maximum':
      return { path, message: `port must be an integer from 1 to 65535` };
    case 'enum':
      return { path, message: `${describe(path)} must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { path, message: `unsupported version; this portcullis reads "version: 1"` };
    case 'minItems':
      return { path, message: `${describe(path)} must not be empty` };
    case 'minLength':
      return { path, message: `${describe(path)} must not be empty` };
    case 'propertyNames':
      return null; // reported by the nested minLength error
    default:
      return { path, message: `${describe(path)}: ${error.message ?? 'invalid'}` };
  }
}

interface RawEndpoint {
  host?: string;
  port?: number;
  ports?: number[];
  protocol?: 'rest';
  tls?: 'inspect' | 'passthrough';
  enforcement?: 'enforce' | 'audit';
  access?: string;
  rules?: Array<{ allow: L7Rule }>;
  deny_rules?: L7Rule[];
  allowed_ips?: string[];
  credentials?: string[];
  allow_cleartext_credentials?: boolean;
  credentials_in_body?: boolean;
}

interface RawPolicy {
  name?: string;
  endpoints: RawEndpoint[];
  binaries?: Array<{ path: string }> | null;
}

function checkRule(rule: L7Rule, path: NodePath, problems: Problem[]): L7Rule {
  const method = rule.method.toUpperCase();
  if (!METHOD.test(method)) problems.push({ path: [...path, 'method'], message: `method "${rule.method}" must be an HTTP method name or "*"` });
  if (!rule.path.startsWith('/')) problems.push({ path: [...path, 'path'], message: `path "${rule.path}" must start with "/" (use "/**" for every path)` });
  return { method, path: rule.path };
}

/** A credential declared at the top level: its source (not its value: load.ts reads that). */
export interface DeclaredCredential {
  name: string;
  source: CredentialSource;
  /** The node of its `from:`, for errors while reading the value. */
  path: NodePath;
}

function checkDeclaredCredentials(raw: Record<string, { from: string }> | null | undefined, baseDir: string, problems: Problem[]): DeclaredCredential[] {
  const declared: DeclaredCredential[] = [];
  for (const [name, entry] of Object.entries(raw ?? {})) {
    const path: NodePath = ['credentials', name];
    if (!CREDENTIAL_NAME.test(name)) {
      problems.push({ path, atKey: true, message: `credential name "${name}" must be 1-20 lower-case letters, digits or _, starting with a letter (it goes into placeholders and DNS-safe names)` });
      continue;
    }
    const source = parseCredentialSource(entry.from, baseDir);
    if (source.ok) declared.push({ name, source: source.value, path: [...path, 'from'] });
    else problems.push({ path: [...path, 'from'], message: source.message });
  }
  return declared;
}

/** Endpoint keys for credentials; the normalised fields, or {} when the endpoint binds none. */
function endpointCredentials(raw: RawEndpoint, path: NodePath, declared: ReadonlySet<string>, problems: Problem[]): Partial<Endpoint> {
  if (raw.credentials === undefined) {
    for (const key of ['allow_cleartext_credentials', 'credentials_in_body'] as const) {
      if (raw[key] !== undefined) problems.push({ path: [...path, key], atKey: true, message: `"${key}" applies only to an endpoint with "credentials"` });
    }
    return {};
  }
  for (const [i, name] of raw.credentials.entries()) {
    if (!declared.has(name)) problems.push({ path: [...path, 'credentials', i], message: `credential "${name}" is not declared under the top-level "credentials:"` });
  }
  const cleartext = raw.allow_cleartext_credentials === true;
  if (raw.tls === 'passthrough') {
    problems.push({ path: [...path, 'credentials'], atKey: true, message: 'credentials are swapped only in requests the proxy sees, which "tls: passthrough" (an opaque tunnel) does not allow; use "tls: inspect"' });
  } else if (raw.tls === undefined && raw.protocol !== 'rest' && !cleartext) {
    problems.push({ path: [...path, 'credentials'], atKey: true, message: 'credentials need an inspected endpoint ("protocol: rest" or "tls: inspect"), or "allow_cleartext_credentials: true" for plain HTTP' });
  }
  const ports = raw.ports ?? (raw.port !== undefined ? [raw.port] : []);
  if (ports.includes(80) && !cleartext) {
    problems.push({ path: [...path, 'credentials'], atKey: true, message: 'port 80 is plain HTTP: a credential swapped there crosses the network in clear text; add "allow_cleartext_credentials: true" to accept that' });
  }
  return { credentials: [...new Set(raw.credentials)].sort(), allow_cleartext_credentials: cleartext, credentials_in_body: raw.credentials_in_body === true };
}

function normaliseEndpoint(raw: RawEndpoint, path: NodePath, declared: ReadonlySet<string>, problems: Problem[]): Endpoint | null {
  const before = problems.length;
  const credentials = endpointCredentials(raw, path, declared, problems);
  if (raw.port !== undefined && raw.ports !== undefined) {
    problems.push({ path: [...path, 'ports'], atKey: true, message: 'give either "port" or "ports", not both' });
  }
  if (raw.port === undefined && raw.ports === undefined) {
    problems.push({ path, message: 'endpoint needs "port" or "ports"' });
  }
  if (raw.host === undefined && raw.allowed_ips === undefined) {
    problems.push({ path, message: 'endpoint needs "host", "allowed_ips" or both' });
  }
  const isRest = raw.protocol === 'rest';
  for (const key of ['rules', 'deny_rules', 'access', 'enforcement'] as const) {
    if (raw[key] !== undefined && !isRest) {
      problems.push({ path: [...path, key], atKey: true, message: `"${key}" applies only to endpoints with "protocol: rest"; without it the rule would be ignored` });
    }
  }
  if (raw.tls === 'passthrough' && isRest) {
    for (const key of ['rules', 'deny_rules', 'access'] as const) {
      if (raw[key] !== undefined) {
        problems.push({ path: [...path, key], atKey: true, message: `"${key}" needs to see each request, which "tls: passthrough" (an opaque tunnel) does not allow; remove it or use "tls: inspect"` });
      }
    }
  }
  let host: string | null = null;
  let hostKind: Endpoint['host_kind'] = 'none';
  if (raw.host !== undefined) {
    const parsed = parseHostPattern(raw.host);
    if (parsed.ok) {
      host = parsed.host;
      hostKind = parsed.kind;
    } else problems.push({ path: [...path, 'host'], message: parsed.message });
  }
  const allowedIps: string[] = [];
  for (const [i, entry] of (raw.allowed_ips ?? []).entries()) {
    const parsed = parseAllowedIp(entry);
    if (parsed.ok) allowedIps.push(parsed.cidr);
    else problems.push({ path: [...path, 'allowed_ips', i], message: parsed.message });
  }
  const rules: L7Rule[] = [];
  for (const [i, rule] of (raw.rules ?? []).entries()) rules.push(checkRule(rule.allow, [...path, 'rules', i, 'allow'], problems));
  for (const method of raw.access ? (ACCESS_PRESETS[raw.access] ?? []) : []) rules.push({ method, path: '/**' });
  const denyRules = (raw.deny_rules ?? []).map((rule, i) => checkRule(rule, [...path, 'deny_rules', i], problems));
  if (problems.length > before) return null;
  const ports = [...new Set(raw.ports ?? (raw.port !== undefined ? [raw.port] : []))].sort((a, b) => a - b);
  return {
    host,
    host_kind: hostKind,
    ports,
    protocol: isRest ? 'rest' : '',
    tls: raw.tls ?? (isRest ? 'inspect' : 'passthrough'),
    enforcement: raw.enforcement ?? 'enforce',
    rules,
    deny_rules: denyRules,
    allowed_ips: [...new Set(allowedIps)].sort(),
    ...credentials,
  };
}

export type ValidationResult = { ok: true; policies: Policy[]; credentials: DeclaredCredential[] } | { ok: false; problems: Problem[] };

/**
 * Validates the parsed YAML value of a policy file and normalises it. `baseDir` (the policy
 * file's directory) anchors relative `file:` credential sources.
 */
export function validatePolicyDocument(value: unknown, baseDir = '.'): ValidationResult {
  if (!checkStructure(value)) {
    const problems = (checkStructure.errors ?? []).map(structureProblem).filter((p): p is Problem => p !== null);
    return { ok: false, problems };
  }
  const problems: Problem[] = [];
  const file = value as { network_policies: Record<string, RawPolicy> | null; credentials?: Record<string, { from: string }> | null };
  const credentials = checkDeclaredCredentials(file.credentials, baseDir, problems);
  const declared = new Set(Object.keys(file.credentials ?? {}));
  const policies: Policy[] = [];
  const seenNames = new Map<string, string>();
  for (const [key, raw] of Object.entries(file.network_policies ?? {})) {
    const path: NodePath = ['network_policies', key];
    const name = raw.name ?? key;
    const clash = seenNames.get(name);
    if (clash !== undefined) {
      problems.push({ path: raw.name !== undefined ? [...path, 'name'] : path, atKey: raw.name === undefined, message: `policy name "${name}" is already used by "${clash}"` });
    }
    seenNames.set(name, key);
    const binaries: string[] = [];
    for (const [i, entry] of (raw.binaries ?? []).entries()) {
      const parsed = parseBinaryPattern(entry.path);
      if (parsed.ok) binaries.push(parsed.pattern);
      else problems.push({ path: [...path, 'binaries', i, 'path'], message: parsed.message });
    }
    const endpoints = raw.endpoints
      .map((endpoint, i) => normaliseEndpoint(endpoint, [...path, 'endpoints', i], declared, problems))
      .filter((e): e is Endpoint => e !== null);
    policies.push({ name, binaries: [...new Set(binaries)].sort(), endpoints });
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, policies: policies.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), credentials };
}
