// The TLS 1.3 cipher suites the proxy offers and picks on inspected connections, in order.
// AES-128-GCM first (as Go's crypto/tls and BoringSSL order them where the CPU has AES
// instructions): an inspected byte is decrypted and encrypted again by the proxy, and
// AES-128-GCM costs about a third less per byte than AES-256-GCM, Node's default first choice.
// All three are TLS 1.3's standard suites; TLS 1.2 keeps Node's default list.
import { constants } from 'node:crypto';
import { DEFAULT_CIPHERS } from 'node:tls';

const TLS13_ORDER = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/** Node's cipher list (TLS 1.3 suites and TLS 1.2 ciphers in one string) with the TLS 1.3 suites in our order. */
export const PROXY_CIPHERS = [...TLS13_ORDER, ...DEFAULT_CIPHERS.split(':').filter((name) => !TLS13_ORDER.includes(name))].join(':');

/**
 * For the proxy's server side (the client leg): its order decides, except that a client
 * putting ChaCha20-Poly1305 first (one without AES instructions) gets it.
 */
export const SERVER_CIPHER_OPTIONS = {
  ciphers: PROXY_CIPHERS,
  honorCipherOrder: true,
  secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
} as const;
