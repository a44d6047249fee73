// JWS compact serialisation (RFC 7515) for the algorithms OPA's bundle signing knows: RS, PS, ES
// and HS with SHA-256/384/512. Keys are PEM (private for signing; public key or certificate for
// verifying) or, for HS, the shared secret itself. Pure apart from node:crypto.
import { createHmac, createPrivateKey, createPublicKey, sign, timingSafeEqual, verify, constants, type KeyObject } from 'node:crypto';

export const JWS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512'] as const;
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];

export class JwsError extends Error {
  override name = 'JwsError';
}

export function isJwsAlgorithm(text: string): text is JwsAlgorithm {
  return (JWS_ALGORITHMS as readonly string[]).includes(text);
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

function hashOf(alg: JwsAlgorithm): string {
  return `sha${alg.slice(2)}`;
}

function asymmetricOptions(alg: JwsAlgorithm, key: KeyObject): { key: KeyObject; padding?: number; saltLength?: number; dsaEncoding?: 'ieee-p1363' } {
  if (alg.startsWith('PS')) return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 };
  if (alg.startsWith('ES')) return { key, dsaEncoding: 'ieee-p1363' };
  return { key };
}

function privateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new JwsError(`not a usable private key: ${(err as Error).message}`);
  }
}

function publicKey(pem: string): KeyObject {
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw new JwsError(`not a usable public key or certificate: ${(err as Error).message}`);
  }
}

export function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, alg: JwsAlgorithm, key: string): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = alg.startsWith('HS') ? createHmac(hashOf(alg), key).update(input).digest() : sign(hashOf(alg), Buffer.from(input), asymmetricOptions(alg, privateKey(key)));
  return `${input}.${b64url(signature)}`;
}

export interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

export function decodeJws(token: string): DecodedJws {
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwsError('signature is not a JWS in compact form');
  const part = (text: string, what: string): Record<string, unknown> => {
    try {
      const value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
      return value as Record<string, unknown>;
    } catch (err) {
      throw new JwsError(`signature ${what} is not a JSON object: ${(err as Error).message}`);
    }
  };
  return { header: part(parts[0]!, 'header'), payload: part(parts[1]!, 'payload'), signingInput: `${parts[0]}.${parts[1]}`, signature: Buffer.from(parts[2]!, 'base64url') };
}

/** True when `jws` was signed with `key` under `alg` (the header's alg must be the same). */
export function verifyJws(jws: DecodedJws, alg: JwsAlgorithm, key: string): boolean {
  if (jws.header.alg !== alg) return false;
  if (alg.startsWith('HS')) {
    const expected = createHmac(hashOf(alg), key).update(jws.signingInput).digest();
    return expected.length === jws.signature.length && timingSafeEqual(expected, jws.signature);
  }
  return verify(hashOf(alg), Buffer.from(jws.signingInput), asymmetricOptions(alg, publicKey(key)), jws.signature);
}
