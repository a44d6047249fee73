// `portcullis build`: the policy as an OPA bundle — `.manifest` (revision, roots, the wasm
// entrypoint), `policy.wasm`, `data.json` (the normalised policy under `portcullis`), the Rego
// it was compiled from (bundle-relative paths), and `.signatures.json` when signing. The same
// inputs give the same bytes.
import { readFile } from 'node:fs/promises';
import { compiledWasm, regoFiles } from '../engine/bundle.js';
import { ENTRYPOINT } from '../engine/opa-cli.js';
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

export async function buildBundleFiles(opts: BuildOptions): Promise<BundleFile[]> {
  const files: BundleFile[] = [
    { name: '.manifest', data: manifestFor(opts.revision) },
    { name: 'policy.wasm', data: await compiledWasm(opts.regoDirs) },
    { name: 'data.json', data: Buffer.from(JSON.stringify({ [BUNDLE_ROOT]: opts.data })) },
    ...(opts.wasmOnly ? [] : await Promise.all((await regoFiles(opts.regoDirs)).map(async (f) => ({ name: f.name, data: await readFile(f.path) })))),
  ];
  if (opts.signing) files.push(signBundle(files, opts.signing));
  return files;
}

export async function buildBundle(opts: BuildOptions): Promise<Buffer> {
  return writeArchive(await buildBundleFiles(opts));
}
