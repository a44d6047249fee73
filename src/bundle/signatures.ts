// Bundle signatures as OPA makes and checks them: `.signatures.json` holds one JWS whose payload
// lists every file with its SHA-256 (structured files by their value, see structured-hash.ts),
// the key id and optional scope and claims. Verification: the signature checks out under the
// configured key, the scope matches, and the files listed are exactly the files present (less
// `exclude_files`), each with its hash. Pure.
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { BundleFile } from './archive.js';
import { decodeJws, signJws, verifyJws, type JwsAlgorithm } from './jws.js';
import { structuredDigest } from './structured-hash.js';

export const SIGNATURES_FILE = '.signatures.json';

export class BundleVerificationError extends Error {
  override name = 'BundleVerificationError';
}

export interface SigningOptions {
  algorithm: JwsAlgorithm;
  /** PEM private key, or the HS secret. */
  key: string;
  keyId?: string;
  scope?: string;
  /** Extra claims for the payload (`--claims-file`). */
  claims?: Record<string, unknown>;
}

export interface VerificationKey {
  algorithm: JwsAlgorithm;
  /** PEM public key or certificate, or the HS secret. */
  key: string;
}

export interface VerificationOptions {
  keys: Record<string, VerificationKey>;
  /** The key to use; otherwise the signature's `kid`, then its payload's `keyid`, then "default". */
  keyId?: string;
  scope?: string;
  /** Glob patterns of files left out of the check. */
  excludeFiles?: string[];
}

function isStructured(name: string): boolean {
  const base = name.split('/').pop()!;
  return name === '.manifest' || base === 'data.json' || base === 'data.yaml' || base === 'data.yml';
}

/** The digest OPA lists for a file. */
export function fileDigest(file: BundleFile): string {
  if (!isStructured(file.name)) return createHash('sha256').update(file.data).digest('hex');
  const text = file.data.toString('utf8');
  return structuredDigest(file.name.endsWith('.json') || file.name === '.manifest' ? text : JSON.stringify(parseYaml(text)));
}

export function signBundle(files: BundleFile[], opts: SigningOptions): BundleFile {
  const keyid = opts.keyId ?? 'default';
  const payload: Record<string, unknown> = {
    ...(opts.claims ?? {}),
    files: files.map((f) => ({ name: f.name, hash: fileDigest(f), algorithm: 'SHA-256' })),
    keyid,
    ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
  };
  const token = signJws({ alg: opts.algorithm, kid: keyid, typ: 'JWT' }, payload, opts.algorithm, opts.key);
  return { name: SIGNATURES_FILE, data: Buffer.from(JSON.stringify({ signatures: [token] }, null, 1)) };
}

function globRegex(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\u0000/g, '.*');
  return new RegExp(`^${body}$`);
}

function listedFiles(payload: Record<string, unknown>): Map<string, string> {
  if (!Array.isArray(payload.files)) throw new BundleVerificationError('signature payload has no list of files');
  const out = new Map<string, string>();
  for (const entry of payload.files as unknown[]) {
    const f = entry as { name?: unknown; hash?: unknown; algorithm?: unknown };
    if (typeof f.name !== 'string' || typeof f.hash !== 'string') throw new BundleVerificationError('signature payload lists a file without name or hash');
    if (f.algorithm !== undefined && f.algorithm !== 'SHA-256') throw new BundleVerificationError(`file ${f.name}: hashing algorithm ${String(f.algorithm)} is not supported`);
    out.set(f.name.replace(/^\/+/, ''), f.hash);
  }
  return out;
}

/** Throws BundleVerificationError with the first problem found. */
export function verifyBundle(files: BundleFile[], opts: VerificationOptions): void {
  const signatures = files.find((f) => f.name === SIGNATURES_FILE);
  if (!signatures) throw new BundleVerificationError('bundle is not signed (no .signatures.json) but verification keys are configured');
  let tokens: unknown;
  try {
    tokens = (JSON.parse(signatures.data.toString('utf8')) as { signatures?: unknown }).signatures;
  } catch {
    throw new BundleVerificationError('.signatures.json is not JSON');
  }
  if (!Array.isArray(tokens) || tokens.length !== 1 || typeof tokens[0] !== 'string') throw new BundleVerificationError('.signatures.json must hold exactly one signature');
  const jws = decodeJws(tokens[0]);
  // As OPA: the configured key id, else the one the signature names, else "default" (opa's
  // --verification-key-id default; `opa build --claims-file` names none).
  const keyId = opts.keyId ?? (typeof jws.header.kid === 'string' ? jws.header.kid : undefined) ?? (typeof jws.payload.keyid === 'string' ? jws.payload.keyid : undefined) ?? 'default';
  const key = opts.keys[keyId];
  if (!key) throw new BundleVerificationError(`unknown key id "${keyId}"`);
  if (!verifyJws(jws, key.algorithm, key.key)) throw new BundleVerificationError(`signature does not verify with key "${keyId}" (${key.algorithm})`);
  if (opts.scope !== undefined && jws.payload.scope !== opts.scope) throw new BundleVerificationError(`scope "${String(jws.payload.scope ?? '')}" does not match the configured scope "${opts.scope}"`);
  const excluded = (opts.excludeFiles ?? []).map(globRegex);
  const listed = listedFiles(jws.payload);
  const present = files.filter((f) => f.name !== SIGNATURES_FILE && !excluded.some((r) => r.test(f.name)));
  for (const file of present) {
    const hash = listed.get(file.name);
    if (hash === undefined) throw new BundleVerificationError(`file ${file.name} is in the bundle but not in its signature`);
    if (hash !== fileDigest(file)) throw new BundleVerificationError(`file ${file.name}: hash does not match the signature`);
    listed.delete(file.name);
  }
  // OPA lists data.json even when a bundle carries no data: its value is then {}.
  if (listed.get('data.json') === structuredDigest('{}')) listed.delete('data.json');
  for (const name of listed.keys()) if (!excluded.some((r) => r.test(name))) throw new BundleVerificationError(`file ${name} is in the signature but missing from the bundle`);
}
