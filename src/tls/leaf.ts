// Leaf certificates for inspected connections: ECDSA P-256, the host as the only SAN (a DNS
// name, or an IP address SAN for an IP literal), serverAuth, valid from an hour ago for a day
// and never beyond the CA.
//
// One key pair serves every leaf a minter makes: the leaf key never leaves the proxy's memory,
// so sharing it across hosts exposes nothing a per-host key would protect (whoever could read it
// could read the CA key beside it), and minting skips key generation. A new minter (a new
// proxy, a new run) makes a new key. The certificate is encoded by hand (./der.ts) and signed
// with node:crypto: through a general ASN.1 library, encoding cost more than the signature.
import { KeyObject, sign as cryptoSign } from 'node:crypto';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { CertificateAuthority } from './ca.js';
import * as der from './der.js';
import { generateP256, privateKeyPem, randomSerial, subtle, x509 } from './signing.js';

const HOUR_MS = 60 * 60 * 1000;

export const LEAF_BACKDATE_MS = HOUR_MS;
export const LEAF_LIFETIME_MS = 24 * HOUR_MS;

export interface Leaf {
  /** The canonical host the leaf names. */
  host: string;
  certPem: string;
  keyPem: string;
  /** What a TLS server sends: the leaf, then the CA when it is not a root (clients hold the root). */
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
  keyPem: string;
  /** SubjectPublicKeyInfo, DER. */
  spki: Buffer;
  /** The subjectKeyIdentifier extension, DER. */
  subjectKeyId: Buffer;
}

async function newLeafKey(): Promise<LeafKey> {
  const keys = await generateP256();
  return {
    keyPem: await privateKeyPem(keys.privateKey),
    spki: Buffer.from(await subtle.exportKey('spki', keys.publicKey)),
    subjectKeyId: Buffer.from((await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)).rawData),
  };
}

export interface MinterOptions {
  /** A fresh key pair for every leaf instead of one per minter (slower; for comparison). */
  keyPerLeaf?: boolean;
}

/** The signature algorithm identifier (DER) and the signing function for the CA's key. */
function caSigner(ca: CertificateAuthority): { algorithm: Buffer; sign: (tbs: Buffer) => Buffer } {
  const key = KeyObject.from(ca.signingKey);
  const hash = String((ca.algorithm as { hash: string }).hash).replace('-', '').toLowerCase();
  if (ca.algorithm.name === 'ECDSA') {
    const oid = hash === 'sha384' ? '1.2.840.10045.4.3.3' : '1.2.840.10045.4.3.2';
    return { algorithm: der.sequence(der.objectIdentifier(oid)), sign: (tbs) => cryptoSign(hash, tbs, { key, dsaEncoding: 'der' }) };
  }
  return { algorithm: der.sequence(der.objectIdentifier('1.2.840.113549.1.1.11'), der.NULL), sign: (tbs) => cryptoSign('sha256', tbs, key) };
}

/** A certificate's issuer and subject exactly as encoded (the leaves' issuer must match the CA's subject byte for byte). */
function namesOf(certDer: Buffer): { issuer: Buffer; subject: Buffer } {
  const tbs = der.children(certDer)[0]!;
  const fields = der.children(tbs);
  const versioned = fields[0]![0] === 0xa0 ? 1 : 0;
  return { issuer: fields[2 + versioned]!, subject: fields[4 + versioned]! };
}

const extension = (oid: string, critical: boolean, value: Buffer): Buffer =>
  der.sequence(der.objectIdentifier(oid), ...(critical ? [der.TRUE] : []), der.octetString(value));

const VERSION_3 = der.explicit(0, Buffer.from([0x02, 0x01, 0x02]));
const BASIC_CONSTRAINTS_END_ENTITY = extension('2.5.29.19', true, der.sequence());
const KEY_USAGE_DIGITAL_SIGNATURE = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x07, 0x80]));
const EKU_SERVER_AUTH = extension('2.5.29.37', false, der.sequence(der.objectIdentifier('1.3.6.1.5.5.7.3.1')));
const COMMON_NAME = der.objectIdentifier('2.5.4.3');

function pem(certificate: Buffer): string {
  const lines = certificate.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----`;
}

export class LeafMinter {
  private constructor(
    readonly ca: CertificateAuthority,
    private readonly sharedKey: LeafKey | null,
    private readonly issuer: Buffer,
    /** Sent after each leaf: empty for a root CA, which clients hold already. */
    private readonly chainTail: string,
    private readonly authorityKeyId: Buffer,
    private readonly signer: { algorithm: Buffer; sign: (tbs: Buffer) => Buffer },
  ) {}

  static async create(ca: CertificateAuthority, options: MinterOptions = {}): Promise<LeafMinter> {
    const authorityKeyId = Buffer.from((await x509.AuthorityKeyIdentifierExtension.create(ca.cert)).rawData);
    const names = namesOf(Buffer.from(ca.cert.rawData));
    // Sending a root costs every handshake bytes and every new context a parse, for nothing.
    const chainTail = names.issuer.equals(names.subject) ? '' : `${ca.certPem.trim()}\n`;
    return new LeafMinter(ca, options.keyPerLeaf ? null : await newLeafKey(), names.subject, chainTail, authorityKeyId, caSigner(ca));
  }

  /** Mints a leaf for `host` valid at `now` (validity in whole seconds). */
  async mint(host: string, now = new Date()): Promise<Leaf> {
    const canonical = canonicalLeafHost(host);
    const second = Math.floor(now.getTime() / 1000) * 1000;
    const notBefore = new Date(Math.max(second - LEAF_BACKDATE_MS, this.ca.cert.notBefore.getTime()));
    const notAfter = new Date(Math.min(second + LEAF_LIFETIME_MS, this.ca.cert.notAfter.getTime()));
    if (notAfter <= now) throw new Error(`the CA expired on ${this.ca.cert.notAfter.toISOString()}; make a new one with portcullis ca init`);
    const key = this.sharedKey ?? (await newLeafKey());
    // A common name holds at most 64 characters; a longer name goes in the (then critical) SAN only.
    const withSubject = canonical.host.length <= 64;
    const subject = withSubject ? der.sequence(der.set(der.sequence(COMMON_NAME, der.utf8String(canonical.host)))) : der.sequence();
    const name = canonical.ip ? der.implicit(7, Buffer.from(ipaddr.parse(canonical.host).toByteArray())) : der.implicit(2, Buffer.from(canonical.host, 'ascii'));
    const tbs = der.sequence(
      VERSION_3,
      der.unsignedInteger(Buffer.from(randomSerial(), 'hex')),
      this.signer.algorithm,
      this.issuer,
      der.sequence(der.time(notBefore), der.time(notAfter)),
      subject,
      key.spki,
      der.explicit(
        3,
        der.sequence(
          BASIC_CONSTRAINTS_END_ENTITY,
          KEY_USAGE_DIGITAL_SIGNATURE,
          EKU_SERVER_AUTH,
          extension('2.5.29.17', !withSubject, der.sequence(name)),
          this.authorityKeyId,
          key.subjectKeyId,
        ),
      ),
    );
    const certificate = der.sequence(tbs, this.signer.algorithm, der.bitString(this.signer.sign(tbs)));
    const certPem = pem(certificate);
    return { host: canonical.host, certPem, keyPem: key.keyPem, chainPem: `${certPem}\n${this.chainTail}`, notBefore, notAfter };
  }
}
