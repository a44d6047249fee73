// Command-line keys for signing and verifying bundles, with OPA's flag names
// (`--signing-key/--signing-alg/--claims-file`, `--verification-key/--verification-key-id/--scope`).
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { isJwsAlgorithm, JWS_ALGORITHMS, type JwsAlgorithm } from '../bundle/jws.js';
import type { SigningOptions, VerificationOptions } from '../bundle/signatures.js';
import { collect } from './repeatable.js';

export function jwsAlgorithm(text: string): JwsAlgorithm {
  if (!isJwsAlgorithm(text)) throw new InvalidArgumentError(`"${text}" is not one of ${JWS_ALGORITHMS.join(', ')}`);
  return text;
}

/** A PEM file's text, or for HS algorithms the secret itself (as `opa build` takes it). */
function keyMaterial(value: string, alg: JwsAlgorithm): string {
  if (alg.startsWith('HS')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    throw new Error(`cannot read key file ${value}: ${(err as Error).message}`);
  }
}

export interface SigningFlags {
  signingKey?: string;
  signingAlg: JwsAlgorithm;
  signingKeyId?: string;
  claimsFile?: string;
  scope?: string;
}

export function signingOptions(flags: SigningFlags): SigningOptions | undefined {
  if (flags.signingKey === undefined) return undefined;
  let claims: Record<string, unknown> | undefined;
  if (flags.claimsFile !== undefined) {
    try {
      claims = JSON.parse(readFileSync(flags.claimsFile, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`cannot read claims file ${flags.claimsFile}: ${(err as Error).message}`);
    }
  }
  return {
    algorithm: flags.signingAlg,
    key: keyMaterial(flags.signingKey, flags.signingAlg),
    ...(flags.signingKeyId !== undefined ? { keyId: flags.signingKeyId } : {}),
    ...(flags.scope !== undefined ? { scope: flags.scope } : {}),
    ...(claims !== undefined ? { claims } : {}),
  };
}

export interface VerificationFlags {
  verificationKey?: string;
  verificationKeyId: string;
  verificationAlg: JwsAlgorithm;
  scope?: string;
  excludeFilesVerify?: string[];
}

export function addVerificationFlags(command: Command): Command {
  return command
    .option('--verification-key <file|secret>', 'key to verify a signed bundle: PEM public key or certificate (HS*: the secret)')
    .option('--verification-key-id <id>', 'key id of --verification-key', 'default')
    .option('--verification-alg <alg>', `algorithm of --verification-key (${JWS_ALGORITHMS.join(', ')})`, jwsAlgorithm, 'RS256')
    .option('--scope <scope>', 'scope the bundle signature must carry')
    .option('--exclude-files-verify <glob>', 'file left out of verification (repeatable)', collect);
}

export function verificationOptions(flags: VerificationFlags): VerificationOptions | undefined {
  if (flags.verificationKey === undefined) return undefined;
  return {
    keys: { [flags.verificationKeyId]: { algorithm: flags.verificationAlg, key: keyMaterial(flags.verificationKey, flags.verificationAlg) } },
    keyId: flags.verificationKeyId,
    ...(flags.scope !== undefined ? { scope: flags.scope } : {}),
    ...(flags.excludeFilesVerify ? { excludeFiles: flags.excludeFilesVerify } : {}),
  };
}
