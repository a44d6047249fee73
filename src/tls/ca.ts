// The certificate authority that signs the leaves of inspected connections.
//
// Made by `portcullis ca init` (or per run): ECDSA P-256, CA:true with pathlen 0 (it signs
// leaves only), keyUsage keyCertSign + cRLSign, a random serial and a subject that names
// portcullis and says what the CA is for.
//
// No name constraints. Permitted subtrees would have to list every host the policy allows,
// which is not known when the CA is made and changes with every reload (and a hostless
// `allowed_ips` endpoint allows any name); a CA constrained to yesterday's policy would break
// clients on today's. Excluded subtrees would add nothing the policy does not already decide.
// The CA's reach is limited instead by where it is trusted (one sandbox, one run), by its key
// (mode 0600, never inside the sandbox) and by its leaves' validity (a day at most).
import { P256, generateP256, privateKeyPem, randomSerial, x509, type SigningAlgorithm } from './signing.js';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

export interface CertificateAuthority {
  cert: x509.X509Certificate;
  certPem: string;
  /** The CA's private key, usable for signing only. */
  signingKey: CryptoKey;
  algorithm: SigningAlgorithm;
}

export interface CreatedAuthority extends CertificateAuthority {
  /** PKCS#8 PEM of the private key, for `ca init` to write. */
  keyPem: string;
}

export interface CreateOptions {
  /** Days from now until the CA expires (default 365). */
  validityDays?: number;
  now?: Date;
}

export const DEFAULT_CA_DAYS = 365;

export async function createAuthority(options: CreateOptions = {}): Promise<CreatedAuthority> {
  const now = (options.now ?? new Date()).getTime();
  const days = options.validityDays ?? DEFAULT_CA_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new RangeError(`CA validity must be 1 to 3650 days, not ${days}`);
  const keys = await generateP256();
  const serial = randomSerial();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    // The serial's start tells two portcullis CAs apart in a trust store listing.
    name: `CN=portcullis TLS inspection CA ${serial.slice(0, 8)}, O=portcullis`,
    // Back-dated an hour so a client whose clock lags a little still accepts it.
    notBefore: new Date(now - HOUR_MS),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: P256,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert,
    certPem: cert.toString('pem'),
    signingKey: keys.privateKey,
    algorithm: { ...P256 },
    keyPem: await privateKeyPem(keys.privateKey),
  };
}
