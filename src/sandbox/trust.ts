// A run's TLS trust: the CA the proxy inspects with, and the bundle CMD trusts. The CA is made
// for the run (its key exists only in this process's memory) unless --ca-cert/--ca-key name
// one; only its certificate reaches the sandbox, in a bundle with the system's roots and the
// --upstream-ca certificates (for passthrough tunnels to private CAs). The bundle lives in a
// root-owned directory of its own outside the sandbox's private mounts, removed with the run.
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isProcessAlive } from '../netns/processes.js';
import type { InspectionTls } from '../tls/inspection.js';

/** Where a fenced run keeps its bundle: root's, outside the private /tmp and /run. */
export const FENCED_TRUST_ROOT = '/var/lib/portcullis/trust';
const PREFIX = 'portcullis-trust-';
const BUNDLE_NAME = 'ca-bundle.pem';

export interface TrustOptions {
  /** --ca-cert and --ca-key: the CA to inspect with instead of one made for the run. */
  ca?: { certFile: string; keyFile: string };
  /** --upstream-ca files. */
  upstreamCaFiles?: string[];
}

export interface RunTrust {
  inspection: InspectionTls;
  /** The bundle CMD trusts: the CA, the upstream CAs, the system's roots (readable by CMD). */
  bundleFile: string;
  /** Removes the bundle's directory. */
  close(): void;
}

export interface TrustPlace {
  /** The directory the run's own directory is made in. */
  root: string;
  /** The uid CMD runs as, when it is not this process's: the CA key must not be theirs. */
  sandboxUid?: number;
}

/** Where the bundle goes: a root-owned directory for a fenced run, the temporary one otherwise. */
export function trustPlace(fenced: boolean, sandboxUid?: number): TrustPlace {
  return fenced ? { root: FENCED_TRUST_ROOT, ...(sandboxUid !== undefined ? { sandboxUid } : {}) } : { root: tmpdir() };
}

/** A CA key the sandbox user owns is one CMD can read (or chmod and read). */
async function refuseKeyOwnedBy(keyFile: string, uid: number): Promise<void> {
  const { CaFileError } = await import('../tls/ca-files.js');
  const info = await stat(keyFile).catch(() => null);
  if (info?.uid === uid) throw new CaFileError(`${keyFile} belongs to the sandbox user (uid ${uid}): CMD could read the CA key; keep it in a file of root's`);
}

async function loadInspection(opts: TrustOptions, place: TrustPlace): Promise<InspectionTls> {
  const { ephemeralInspectionTls, loadInspectionTls } = await import('../tls/inspection.js');
  const options = { upstreamCaFiles: opts.upstreamCaFiles ?? [] };
  if (!opts.ca) return ephemeralInspectionTls(options);
  if (place.sandboxUid !== undefined) await refuseKeyOwnedBy(opts.ca.keyFile, place.sandboxUid);
  return loadInspectionTls(opts.ca.certFile, opts.ca.keyFile, options);
}

/** Makes (or loads) the run's CA and writes the bundle; throws CaFileError naming a bad file. */
export async function prepareRunTrust(opts: TrustOptions, place: TrustPlace): Promise<RunTrust> {
  const inspection = await loadInspection(opts, place);
  const [{ loadUpstreamCas }, { systemRoots }, { writeTrustBundle }] = await Promise.all([
    import('../tls/upstream.js'),
    import('../tls/roots.js'),
    import('../tls/trust-bundle.js'),
  ]);
  const upstreamCas = await loadUpstreamCas(opts.upstreamCaFiles ?? []);
  removeStaleTrustDirs(place.root);
  mkdirSync(place.root, { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(place.root, `${PREFIX}${process.pid}-`));
  const close = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    // The sandbox user reads the bundle; nothing else is ever put in here.
    await chmod(dir, 0o755);
    const bundleFile = join(dir, BUNDLE_NAME);
    await writeTrustBundle(bundleFile, inspection.ca.certPem, [...upstreamCas, ...systemRoots()]);
    return { inspection, bundleFile, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** Removes the bundle directories of runs whose process is gone (ours only, never through a link). */
export function removeStaleTrustDirs(root: string): void {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  const pattern = new RegExp(`^${PREFIX}(\\d+)-`);
  for (const entry of entries) {
    const match = pattern.exec(entry);
    if (!match || Number(match[1]) === process.pid || isProcessAlive(Number(match[1]))) continue;
    const path = join(root, entry);
    const info = lstatSync(path, { throwIfNoEntry: false });
    if (!info?.isDirectory() || info.uid !== process.getuid?.()) continue;
    rmSync(path, { recursive: true, force: true });
  }
}
