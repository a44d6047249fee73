// Where a credential's value comes from (`env:VAR` or `file:/path`) and reading it. The value is
// read when the policy loads and again on each reload, so a rotated file takes effect with the
// next reload. Error messages name the source, never the value.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Secret } from './secret.js';

export type CredentialSource = { kind: 'env'; variable: string } | { kind: 'file'; path: string };

/** Credential names: lower-case, so that placeholders stay lower-case and fit a DNS label. */
export const CREDENTIAL_NAME = /^[a-z][a-z0-9_]{0,19}$/;

const ENV_VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A value that can travel in a header and a URL query: 1–8192 printable ASCII, no space. */
const USABLE_VALUE = /^[\x21-\x7e]{1,8192}$/;

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** `env:VAR` or `file:PATH` (a relative PATH is taken from `baseDir`, the policy file's directory). */
export function parseCredentialSource(text: string, baseDir: string): Parsed<CredentialSource> {
  if (text.startsWith('env:')) {
    const variable = text.slice(4);
    if (!ENV_VARIABLE.test(variable)) return { ok: false, message: `"${text}": "env:" needs an environment variable name (letters, digits, _)` };
    return { ok: true, value: { kind: 'env', variable } };
  }
  if (text.startsWith('file:') && text.length > 5) {
    const path = text.slice(5);
    return { ok: true, value: { kind: 'file', path: isAbsolute(path) ? path : resolve(baseDir, path) } };
  }
  return { ok: false, message: `"${text}" must be "env:VARIABLE" or "file:/path"` };
}

export function describeSource(source: CredentialSource): string {
  return source.kind === 'env' ? `environment variable ${source.variable}` : `file ${source.path}`;
}

/**
 * Reads the value now. A file's value is its content without one trailing newline. The value
 * must be usable in a header as it is (printable ASCII, no space, at most 8 KiB).
 */
export function readCredential(source: CredentialSource, env: NodeJS.ProcessEnv = process.env): Parsed<Secret> {
  let raw: string | undefined;
  if (source.kind === 'env') {
    raw = env[source.variable];
    if (raw === undefined || raw === '') return { ok: false, message: `environment variable ${source.variable} is not set (or empty)` };
  } else {
    try {
      raw = readFileSync(source.path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      return { ok: false, message: `cannot read ${source.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` };
    }
  }
  if (!USABLE_VALUE.test(raw)) return { ok: false, message: `the value of ${describeSource(source)} must be 1 to 8192 printable ASCII characters without spaces` };
  return { ok: true, value: new Secret(raw) };
}
