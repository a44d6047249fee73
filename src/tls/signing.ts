// Web Crypto for @peculiar/x509, and the signature algorithm that goes with a CA's key.
// Leaves are ECDSA P-256; a CA loaded from files may also be P-384 or RSA (corporate CAs).
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const subtle = webcrypto.subtle;

/** ECDSA P-256 with SHA-256: the CA made by `ca init` and every leaf. */
export const P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export type SigningAlgorithm = EcdsaParams & EcKeyImportParams | (RsaHashedImportParams & Algorithm);

/** The import and signing parameters for a private key of the given kind, or null if unsupported. */
export function signingAlgorithmFor(keyType: string | undefined, curve: string | undefined): SigningAlgorithm | null {
  if (keyType === 'ec' && curve === 'prime256v1') return { ...P256 };
  if (keyType === 'ec' && curve === 'secp384r1') return { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
  if (keyType === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return null;
}

export async function generateP256(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(P256, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** 16 random bytes as hex, the top bit clear so the serial is a positive integer (RFC 5280 4.1.2.2). */
export function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

export { x509 };
