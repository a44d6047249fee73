// Everything an inspected connection needs from this folder, made once per proxy: the CA, the
// leaf cache with its TLS contexts, and the trust for re-originated upstream connections.
import type { SecureContext } from 'node:tls';
import { createAuthority, type CertificateAuthority } from './ca.js';
import { loadAuthority } from './ca-files.js';
import { LeafCache, type LeafCacheOptions } from './leaf-cache.js';
import { LeafMinter } from './leaf.js';
import { loadUpstreamCas, UpstreamTrust } from './upstream.js';

export interface InspectionTls {
  ca: CertificateAuthority;
  leaves: LeafCache;
  upstream: UpstreamTrust;
}

export interface InspectionOptions extends LeafCacheOptions {
  /** `--upstream-ca` files, trusted for upstreams besides the system's roots. */
  upstreamCaFiles?: string[];
}

async function assemble(ca: CertificateAuthority, options: InspectionOptions): Promise<InspectionTls> {
  const leaves = new LeafCache(await LeafMinter.create(ca), options);
  return { ca, leaves, upstream: new UpstreamTrust(await loadUpstreamCas(options.upstreamCaFiles ?? [])) };
}

/** From `--ca-cert` and `--ca-key`; throws CaFileError naming the file at fault. */
export async function loadInspectionTls(certFile: string, keyFile: string, options: InspectionOptions = {}): Promise<InspectionTls> {
  return assemble(await loadAuthority(certFile, keyFile), options);
}

/** A CA made for this process only (`run` without --ca-cert); its key exists only in memory. */
export async function ephemeralInspectionTls(options: InspectionOptions = {}): Promise<InspectionTls> {
  return assemble(await createAuthority({ validityDays: 1 }), options);
}

/** An SNICallback for `tls.createServer` that presents the leaf for the name the client asked for. */
export function leafSniCallback(leaves: LeafCache): (servername: string, done: (err: Error | null, context?: SecureContext) => void) => void {
  return (servername, done) => {
    leaves.get(servername).then(
      (leaf) => done(null, leaf.context),
      (err: Error) => done(err),
    );
  };
}
