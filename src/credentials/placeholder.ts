// Placeholders: what the sandbox holds instead of a value. `portcullis-cred-<name>-<26 base32
// characters>` (128 random bits, lower-case): valid in a header value, a URL component and a
// DNS label, made once per proxy start and never derived from the value.
import { createHmac, randomBytes } from 'node:crypto';

export const PLACEHOLDER_PREFIX = 'portcullis-cred-';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const RANDOM_CHARS = 26;

function base32(bytes: Buffer): string {
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

export function makePlaceholder(name: string): string {
  return `${PLACEHOLDER_PREFIX}${name}-${base32(randomBytes(16))}`;
}

/**
 * Placeholders that several processes of one proxy start agree on (proxy workers): each is the
 * HMAC of the name under `seed` (random, made once per start and shared by those processes
 * only), cut to the same 128 bits. Still never derived from the value.
 */
export function seededPlaceholders(seed: Buffer): (name: string) => string {
  return (name) => `${PLACEHOLDER_PREFIX}${name}-${base32(createHmac('sha256', seed).update(name).digest().subarray(0, 16))}`;
}

/** Length of every placeholder of `name`. */
export function placeholderLength(name: string): number {
  return PLACEHOLDER_PREFIX.length + name.length + 1 + RANDOM_CHARS;
}
