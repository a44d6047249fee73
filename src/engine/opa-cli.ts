// Locates the `opa` CLI: $PORTCULLIS_OPA, the project's .cache/bin/opa (scripts/setup.sh puts it
// there), or `opa` on PATH. An installed package runs the built-in Rego from the wasm it ships:
// opa is needed only to compile extension Rego (--rego), for `compile --target wasm` and for
// `portcullis test`.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built-in Rego that every bundle starts from. */
export const BUILTIN_REGO_DIR = join(PROJECT_ROOT, 'policies', 'portcullis');

export const ENTRYPOINT = 'portcullis/authz/decision';

export function opaBinary(): string {
  const fromEnv = process.env.PORTCULLIS_OPA;
  if (fromEnv) return fromEnv;
  const local = join(PROJECT_ROOT, '.cache', 'bin', 'opa');
  return existsSync(local) ? local : 'opa';
}
