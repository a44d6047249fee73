// Reading a built bundle: unpack with limits, verify its signature when keys are given, and
// check it is one portcullis can run (a manifest naming the wasm entrypoint, the module, the
// policy data under `portcullis`). Pure apart from the archive's decompression.
import { ENTRYPOINT } from '../engine/opa-cli.js';
import type { PolicyData } from '../policy/types.js';
import { readArchive, type ArchiveLimits, type BundleFile } from './archive.js';
import { BUNDLE_ROOT } from './build.js';
import { verifyBundle, BundleVerificationError, type VerificationOptions } from './signatures.js';

export interface BundleContents {
  revision: string;
  roots: string[];
  wasm: Buffer;
  data: PolicyData;
  files: BundleFile[];
}

export class BundleFormatError extends Error {
  override name = 'BundleFormatError';
}

function json(file: BundleFile | undefined, what: string): Record<string, unknown> {
  if (!file) throw new BundleFormatError(`bundle has no ${what}`);
  try {
    const value = JSON.parse(file.data.toString('utf8')) as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new BundleFormatError(`bundle ${what} is not a JSON object: ${(err as Error).message}`);
  }
}

function wasmModuleName(manifest: Record<string, unknown>): string {
  const modules = Array.isArray(manifest.wasm) ? (manifest.wasm as Array<{ entrypoint?: unknown; module?: unknown }>) : [];
  const entry = modules.find((m) => m.entrypoint === ENTRYPOINT);
  if (!entry || typeof entry.module !== 'string') throw new BundleFormatError(`bundle manifest names no wasm module for the entrypoint ${ENTRYPOINT}`);
  return entry.module.replace(/^\/+/, '');
}

export async function readBundle(gz: Buffer, verification?: VerificationOptions, limits?: ArchiveLimits): Promise<BundleContents> {
  const files = await readArchive(gz, limits);
  if (verification) verifyBundle(files, verification);
  else if (files.some((f) => f.name === '.signatures.json')) {
    // As OPA does: a signature is never silently ignored.
    throw new BundleVerificationError('bundle is signed but no verification key was given');
  }
  const manifest = json(files.find((f) => f.name === '.manifest'), '.manifest');
  const moduleName = wasmModuleName(manifest);
  const wasm = files.find((f) => f.name === moduleName);
  if (!wasm) throw new BundleFormatError(`bundle manifest names ${moduleName}, which the bundle does not hold`);
  const document = json(files.find((f) => f.name === 'data.json'), 'data.json');
  const data = document[BUNDLE_ROOT] as PolicyData | undefined;
  if (!data || typeof data !== 'object' || typeof data.policies !== 'object' || typeof data.index !== 'object') throw new BundleFormatError(`bundle data.json holds no portcullis policy under "${BUNDLE_ROOT}"`);
  const roots = Array.isArray(manifest.roots) ? manifest.roots.filter((r): r is string => typeof r === 'string') : [''];
  return { revision: typeof manifest.revision === 'string' ? manifest.revision : '', roots, wasm: wasm.data, data, files };
}
