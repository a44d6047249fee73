// Leaf certificates for inspected connections: ECDSA P-256, the host as the only SAN (a DNS
// name, or an IP address SAN for an IP literal), serverAuth, valid from an hour ago for a day
// and never beyond the CA.
//
// One key pair serves every leaf a minter makes. Generating a P-256 key is the largest part of
// minting (see bench/tls.bench.mjs); the leaf key never leaves the proxy's memory, so sharing
// it across hosts exposes nothing a per-host key would protect: whoever could read it could
// read the CA key beside it. A new minter (a new proxy, a new run) makes a new key.
import { isIP } from 'node:net';
import type { CertificateAuthority } from './ca.js';
import { generateP256, privateKeyPem, randomSerial, x509 } from './signing.js';

const HOUR_MS = 60 * 60 * 1000;

export const LEAF_BACKDATE_MS = HOUR_MS;
export const LEAF_LIFETIME_MS = 24 * HOUR_MS;

export interface Leaf {
  /** The canonical host the leaf names. */
  host: string;
  certPem: string;
  keyPem: string;
  /** The leaf followed by the CA: what a TLS server sends. */
  chainPem: string;
  notBefore: Date;
  notAfter: Date;
}

export class LeafHostError extends Error {
  override name = 'LeafHostError';
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Lower-case, no trailing dot; an IP literal as given (canonical already). Throws on a name no certificate may carry. */
export function canonicalLeafHost(host: string): { host: string; ip: boolean } {
  const name = host.toLowerCase().replace(/\.$/, '');
  const unbracketed = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  if (isIP(unbracketed) !== 0) return { host: unbracketed, ip: true };
  if (name.length === 0 || name.length > 253 || !name.split('.').every((label) => LABEL.test(label))) {
    throw new LeafHostError(`"${host}" is not a host name a certificate can name`);
  }
  return { host: name, ip: false };
}

interface LeafKey {
  keys: CryptoKeyPair;
  keyPem: string;
  subjectKeyId: x509.Extension;
}

async function newLeafKey(): Promise<LeafKey> {
  const keys = await generateP256();
  return { keys, keyPem: await privateKeyPem(keys.privateKey), subjectKeyId: await x509.SubjectKeyIdentifierExtension.create(keys.publicKey) };
}

export interface MinterOptions {
  /** A fresh key pair for every leaf instead of one per minter (slower; for comparison). */
  keyPerLeaf?: boolean;
}

export class LeafMinter {
  private constructor(
    readonly ca: CertificateAuthority,
    private readonly sharedKey: LeafKey | null,
    private readonly authorityKeyId: x509.Extension,
  ) {}

  static async create(ca: CertificateAuthority, options: MinterOptions = {}): Promise<LeafMinter> {
    const authorityKeyId = await x509.AuthorityKeyIdentifierExtension.create(ca.cert);
    return new LeafMinter(ca, options.keyPerLeaf ? null : await newLeafKey(), authorityKeyId);
  }

  /** Mints a leaf for `host` valid at `now`. */
  async mint(host: string, now = new Date()): Promise<Leaf> {
    const canonical = canonicalLeafHost(host);
    const notBefore = new Date(Math.max(now.getTime() - LEAF_BACKDATE_MS, this.ca.cert.notBefore.getTime()));
    const notAfter = new Date(Math.min(now.getTime() + LEAF_LIFETIME_MS, this.ca.cert.notAfter.getTime()));
    if (notAfter <= now) throw new Error(`the CA expired on ${this.ca.cert.notAfter.toISOString()}; make a new one with portcullis ca init`);
    const key = this.sharedKey ?? (await newLeafKey());
    const san = { type: canonical.ip ? ('ip' as const) : ('dns' as const), value: canonical.host };
    // A common name holds at most 64 characters; a longer name goes in the (critical) SAN only.
    const subject = canonical.host.length <= 64 ? `CN=${canonical.host}` : '';
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: this.ca.cert.subject,
      notBefore,
      notAfter,
      signingAlgorithm: this.ca.algorithm,
      publicKey: key.keys.publicKey,
      signingKey: this.ca.signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([san], subject === ''),
        this.authorityKeyId,
        key.subjectKeyId,
      ],
    });
    const certPem = cert.toString('pem');
    return { host: canonical.host, certPem, keyPem: key.keyPem, chainPem: `${certPem}\n${this.ca.certPem}\n`, notBefore, notAfter };
  }
}
