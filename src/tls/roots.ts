// The system's trust anchors: the distribution's bundle (which carries what the administrator
// added with update-ca-certificates) and the Mozilla roots built into Node, without duplicates.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

/** Where distributions keep the bundle of trusted roots (Debian/Ubuntu/Alpine, Fedora/RHEL, others). */
export const DISTRIBUTION_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates in a text, in order. Pure. */
export function pemCertificates(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? [];
}

/** PEM blocks without repeats (compared by their base64 body, whitespace ignored). Pure. */
export function uniquePems(pems: Iterable<string>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pem of pems) {
    const body = pem.replace(/-----[A-Z ]+-----|\s/g, '');
    if (seen.has(body)) continue;
    seen.add(body);
    out.push(pem.trim());
  }
  return out;
}

/** The first distribution bundle that can be read, as PEM certificates; [] when there is none. */
export function distributionRoots(files: readonly string[] = DISTRIBUTION_BUNDLES): string[] {
  for (const file of files) {
    try {
      const pems = pemCertificates(readFileSync(file, 'utf8'));
      if (pems.length > 0) return pems;
    } catch {
      // not this distribution's path
    }
  }
  return [];
}

/** The system's roots: the distribution's bundle, then Node's built-in roots it lacks. */
export function systemRoots(files: readonly string[] = DISTRIBUTION_BUNDLES): string[] {
  return uniquePems([...distributionRoots(files), ...rootCertificates]);
}
