// Re-originating TLS to the upstream of an inspected connection: verified against the system's
// roots plus `--upstream-ca` files, SNI = the host (none for an IP literal), the host checked
// against the certificate. There is no switch that turns verification off.
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { pemCertificates, systemRoots } from './roots.js';
import { CaFileError } from './ca-files.js';
import { PROXY_CIPHERS } from './cipher-suites.js';

/** Reads `--upstream-ca` files; each must hold at least one PEM certificate. */
export async function loadUpstreamCas(files: readonly string[]): Promise<string[]> {
  const pems: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CaFileError(`cannot read the upstream CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const found = pemCertificates(text);
    if (found.length === 0) throw new CaFileError(`${file} holds no PEM certificate (--upstream-ca takes PEM files)`);
    // Parsed now: the trust itself is built at the first inspected dial, too late to say which file is bad.
    for (const pem of found) {
      try {
        new X509Certificate(pem);
      } catch (err) {
        throw new CaFileError(`${file} holds a certificate that cannot be parsed: ${(err as Error).message}`);
      }
    }
    pems.push(...found);
  }
  return pems;
}

export class UpstreamTrust {
  /**
   * Built once, on the first inspected connection's dial: parsing a few hundred roots for every
   * connection would cost milliseconds each, and at start (about 90 ms) it would delay every
   * `portcullis run`, inspecting or not.
   */
  private context: SecureContext | undefined;

  constructor(
    private readonly extraCas: readonly string[] = [],
    /** The roots to trust; the system's when not given. */
    private readonly roots?: readonly string[],
  ) {}

  private secureContext(): SecureContext {
    this.context ??= createSecureContext({ ca: [...(this.roots ?? systemRoots()), ...this.extraCas], ciphers: PROXY_CIPHERS });
    return this.context;
  }

  /** Options for `tls.connect` to `host` (add `socket` or `host`/`port`, and ALPN, at the call). */
  connectOptions(host: string): ConnectionOptions {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    return {
      secureContext: this.secureContext(),
      ...(isIP(bare) === 0 ? { servername: bare } : {}),
      rejectUnauthorized: true,
      // The socket may be connected to an address: check the certificate against the host.
      checkServerIdentity: (_name, cert) => checkServerIdentity(bare, cert),
    };
  }
}

export interface UpstreamTlsError {
  kind: 'upstream_tls_error';
  /** OpenSSL's verification code (e.g. CERT_HAS_EXPIRED), or Node's for a name mismatch. */
  code: string;
  detail: string;
}

const NODE_TLS_CODE = /^ERR_(TLS|SSL)_/;
// OpenSSL's X509_V_ERR_* names as Node reports them in err.code.
const VERIFY_CODE = /^(UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_|PATH_LENGTH_|HOSTNAME_MISMATCH|IP_ADDRESS_MISMATCH|ERROR_IN_CERT_|KEYUSAGE_|OUT_OF_MEM)/;

/** A failed upstream handshake as `upstream_tls_error`; null for errors that are not TLS (resets, refusals). */
export function classifyUpstreamTlsError(err: unknown, host: string): UpstreamTlsError | null {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== 'string' || !(VERIFY_CODE.test(code) || NODE_TLS_CODE.test(code))) return null;
  const message = (err as Error).message;
  const verification = VERIFY_CODE.test(code) || code === 'ERR_TLS_CERT_ALTNAME_INVALID';
  const detail = verification
    ? `the certificate of ${host} is not trusted (${code}: ${message}); if it comes from a private CA, give that CA with --upstream-ca`
    : `the TLS handshake with ${host} failed (${code}: ${message})`;
  return { kind: 'upstream_tls_error', code, detail };
}
