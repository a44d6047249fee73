// Loading a CA from PEM files (`--ca-cert F --ca-key F`) and writing one (`ca init`). Every
// problem is a CaFileError whose message names the file and what is wrong with it.
import { createPrivateKey, X509Certificate as NodeCertificate, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertificateAuthority, CreatedAuthority } from './ca.js';
import { signingAlgorithmFor, subtle, x509 } from './signing.js';

export class CaFileError extends Error {
  override name = 'CaFileError';
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new CaFileError(`cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function parseCertificate(file: string, pem: string): { cert: x509.X509Certificate; node: NodeCertificate } {
  try {
    return { cert: new x509.X509Certificate(pem), node: new NodeCertificate(pem) };
  } catch {
    throw new CaFileError(`${file} does not hold a PEM certificate`);
  }
}

function checkIsCa(file: string, cert: x509.X509Certificate, now: Date): void {
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) throw new CaFileError(`${file} is not a CA certificate (basicConstraints CA:TRUE is missing), so it cannot sign leaf certificates`);
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CaFileError(`${file} is a CA certificate whose keyUsage lacks keyCertSign, so clients would reject the leaves it signs`);
  }
  if (now > cert.notAfter) throw new CaFileError(`${file} expired on ${cert.notAfter.toISOString()}`);
  if (now < cert.notBefore) throw new CaFileError(`${file} is not valid before ${cert.notBefore.toISOString()}`);
}

async function readPrivateKey(file: string): Promise<KeyObject> {
  const info = await stat(file).catch(() => null);
  if (info && (info.mode & 0o077) !== 0) {
    throw new CaFileError(`${file} is readable or writable by other users (mode ${(info.mode & 0o777).toString(8)}); the CA key can sign a certificate for any host: chmod 600 it`);
  }
  const pem = await readText(file, 'CA key');
  try {
    return createPrivateKey(pem);
  } catch {
    throw new CaFileError(`${file} does not hold an unencrypted PEM private key`);
  }
}

/** Loads `--ca-cert` and `--ca-key`: a CA certificate and the private key that matches it. */
export async function loadAuthority(certFile: string, keyFile: string, now = new Date()): Promise<CertificateAuthority> {
  const certPem = await readText(certFile, 'CA certificate');
  const { cert, node } = parseCertificate(certFile, certPem);
  checkIsCa(certFile, cert, now);
  const key = await readPrivateKey(keyFile);
  if (!node.checkPrivateKey(key)) throw new CaFileError(`${keyFile} is not the private key of the certificate in ${certFile}`);
  const algorithm = signingAlgorithmFor(key.asymmetricKeyType, key.asymmetricKeyDetails?.namedCurve);
  if (!algorithm) throw new CaFileError(`${keyFile}: unsupported key type (ECDSA P-256, P-384 or RSA are supported)`);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  return { cert, certPem: cert.toString('pem'), signingKey, algorithm };
}

async function writeNew(file: string, text: string, mode: number, force: boolean): Promise<void> {
  let handle;
  try {
    handle = await open(file, force ? 'w' : 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CaFileError(`${file} already exists; pass --force to replace it`);
    throw new CaFileError(`cannot write ${file}: ${(err as Error).message}`);
  }
  try {
    // open() applies the mode only to a new file (and through the umask): set it before writing.
    await handle.chmod(mode);
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}

export interface WrittenAuthority {
  certFile: string;
  keyFile: string;
}

/** Writes DIR/ca.crt (0644) and DIR/ca.key (0600); DIR is made 0700 when missing. */
export async function writeAuthority(dir: string, ca: CreatedAuthority, force = false): Promise<WrittenAuthority> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  if (!force) {
    for (const file of [certFile, keyFile]) {
      if (await stat(file).catch(() => null)) throw new CaFileError(`${file} already exists; pass --force to replace it`);
    }
  }
  // The key first: a CA certificate without its key is of no use, the reverse is harmless.
  await writeNew(keyFile, ca.keyPem, 0o600, force);
  await writeNew(certFile, ca.certPem, 0o644, force);
  return { certFile, keyFile };
}
