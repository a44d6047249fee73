// `portcullis build`: the policy as an OPA bundle — `.manifest` (revision, roots, the wasm
// entrypoint), `policy.wasm`, `data.json` (the normalised policy under `portcullis`), the Rego
// it was compiled from (bundle-relative paths), and `.signatures.json` when signing. The same
// inputs give the same bytes.
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { compiledWasm, regoSources } from '../engine/bundle.js';
import { BUILTIN_REGO_DIR, ENTRYPOINT } from '../engine/opa-cli.js';
import type { PolicyData } from '../policy/types.js';
import { writeArchive, type BundleFile } from './archive.js';
import { signBundle, type SigningOptions } from './signatures.js';

export const BUNDLE_ROOT = 'portcullis';

export interface BuildOptions {
  data: PolicyData;
  regoDirs: string[];
  revision?: string;
  signing?: SigningOptions;
  /** Leave the Rego sources out: `opa run` then answers from the wasm (when built with opa_wasm). */
  wasmOnly?: boolean;
}

export function manifestFor(revision: string | undefined): Buffer {
  const manifest = {
    revision: revision ?? '',
    roots: [BUNDLE_ROOT],
    wasm: [{ entrypoint: ENTRYPOINT, module: '/policy.wasm' }],
    rego_version: 1,
  };
  return Buffer.from(`${JSON.stringify(manifest)}\n`);
}

/** The Rego sources under bundle-relative names: the built-in at portcullis/, extensions at ext/N/. */
async function regoFiles(regoDirs: string[]): Promise<BundleFile[]> {
  const dirs = [BUILTIN_REGO_DIR, ...regoDirs];
  const files: BundleFile[] = [];
  for (const [i, dir] of dirs.entries()) {
    const prefix = i === 0 ? BUNDLE_ROOT : `${BUNDLE_ROOT}/ext/${i}`;
    for (const source of await regoSources([dir])) files.push({ name: `${prefix}/${relative(dir, source).split('\\').join('/')}`, data: await readFile(source) });
  }
  return files;
}

export async function buildBundleFiles(opts: BuildOptions): Promise<BundleFile[]> {
  const files: BundleFile[] = [
    { name: '.manifest', data: manifestFor(opts.revision) },
    { name: 'policy.wasm', data: await compiledWasm(opts.regoDirs) },
    { name: 'data.json', data: Buffer.from(JSON.stringify({ [BUNDLE_ROOT]: opts.data })) },
    ...(opts.wasmOnly ? [] : await regoFiles(opts.regoDirs)),
  ];
  if (opts.signing) files.push(signBundle(files, opts.signing));
  return files;
}

export async function buildBundle(opts: BuildOptions): Promise<Buffer> {
  return writeArchive(await buildBundleFiles(opts));
}
