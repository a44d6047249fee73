// The TLS inspection foundation against the real tools: `portcullis ca init` as a user runs it,
// openssl reading and verifying what portcullis made, curl and `openssl s_client` completing
// handshakes with minted leaves, and Node's TLS client verifying upstreams. Loopback only.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthority, type CreatedAuthority } from '../src/tls/ca.js';
import { CaFileError, loadAuthority, writeAuthority } from '../src/tls/ca-files.js';
import * as der from '../src/tls/der.js';
import { ephemeralInspectionTls, leafSniCallback, loadInspectionTls } from '../src/tls/inspection.js';
import { LeafCache } from '../src/tls/leaf-cache.js';
import { LEAF_LIFETIME_MS, LeafMinter } from '../src/tls/leaf.js';
import { pemCertificates, systemRoots } from '../src/tls/roots.js';
import { trustBundleText, writeTrustBundle } from '../src/tls/trust-bundle.js';
import { classifyUpstreamTlsError, loadUpstreamCas, UpstreamTrust } from '../src/tls/upstream.js';
import { cli } from './support/cli.js';

const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HOUR = 60 * 60 * 1000;
let fileNo = 0;
function file(text: string, name = `f${fileNo++}.pem`): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function openssl(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await exec('openssl', args, { encoding: 'utf8', timeout: 20_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

/** A TLS server on loopback that presents the cache's leaf for the SNI name (or `fallback` without SNI). */
async function leafServer(cache: LeafCache, fallback: string): Promise<{ port: number; server: tls.Server; names: string[] }> {
  const names: string[] = [];
  const initial = await cache.get(fallback);
  const server = tls.createServer(
    {
      // Used when the client sends no SNI (an IP literal).
      key: initial.keyPem,
      cert: initial.chainPem,
      SNICallback: (name, done) => {
        names.push(name);
        leafSniCallback(cache)(name, done);
      },
    },
    (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n'),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server, names };
}

describe('portcullis ca init', () => {
  const out = join(dir, 'made', 'ca');

  it('writes a P-256 CA certificate (0644) and its key (0600) into a new 0700 directory', async () => {
    const result = await cli('ca', 'init', '--out', out);
    expect(result.code, result.stderr).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(join(out, 'ca.crt')).mode & 0o777).toBe(0o644);
    expect(statSync(join(out, 'ca.key')).mode & 0o777).toBe(0o600);
    const text = (await openssl('x509', '-in', join(out, 'ca.crt'), '-noout', '-text')).out;
    expect(text).toMatch(/NIST CURVE: P-256/);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Subject: CN = portcullis TLS inspection CA [0-9a-f]{8}, O = portcullis/);
    const key = await openssl('pkey', '-in', join(out, 'ca.key'), '-noout', '-text');
    expect(key.out).toMatch(/NIST CURVE: P-256/);
  });

  it('refuses to overwrite without --force, and replaces both files with it', async () => {
    const before = readFileSync(join(out, 'ca.crt'), 'utf8');
    const again = await cli('ca', 'init', '--out', out);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists; pass --force');
    expect(readFileSync(join(out, 'ca.crt'), 'utf8')).toBe(before);
    chmodSync(join(out, 'ca.key'), 0o644);
    const forced = await cli('ca', 'init', '--out', out, '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(join(out, 'ca.crt'), 'utf8')).not.toBe(before);
    expect(statSync(join(out, 'ca.key')).mode & 0o777).toBe(0o600);
  });

  it('loads what it wrote, and the leaves it signs verify with openssl', async () => {
    const inspection = await loadInspectionTls(join(out, 'ca.crt'), join(out, 'ca.key'), { maxEntries: 10 });
    const leaf = await inspection.leaves.get('api.example.com');
    const verified = await openssl('verify', '-CAfile', join(out, 'ca.crt'), '-purpose', 'sslserver', file(leaf.certPem));
    expect(verified.out).toContain(': OK');
  });
});

describe('loading a CA', () => {
  let ca: CreatedAuthority;
  let certFile: string;
  let keyFile: string;
  beforeAll(async () => {
    ca = await createAuthority();
    ({ certFile, keyFile } = await writeAuthority(join(dir, 'good'), ca));
  });

  const refusal = async (cert: string, key: string): Promise<string> => {
    const err = await loadAuthority(cert, key).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CaFileError);
    return (err as Error).message;
  };

  it('names a missing or unreadable certificate or key', async () => {
    expect(await refusal(join(dir, 'nope.crt'), keyFile)).toMatch(/cannot read the CA certificate .*nope\.crt: ENOENT/);
    expect(await refusal(certFile, join(dir, 'nope.key'))).toMatch(/cannot read the CA key .*nope\.key: ENOENT/);
    expect(await refusal(file('not a certificate'), keyFile)).toMatch(/does not hold a PEM certificate/);
    const garbageKey = file('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    chmodSync(garbageKey, 0o600);
    expect(await refusal(certFile, garbageKey)).toMatch(/does not hold an unencrypted PEM private key/);
  });

  it('refuses a key of another CA, a certificate that is not a CA, and a key others can read', async () => {
    const other = await createAuthority();
    const otherKey = file(other.keyPem);
    chmodSync(otherKey, 0o600);
    expect(await refusal(certFile, otherKey)).toMatch(/is not the private key of the certificate/);
    const leaf = await (await LeafMinter.create(ca)).mint('leaf.example');
    const leafKey = file(leaf.keyPem);
    chmodSync(leafKey, 0o600);
    expect(await refusal(file(leaf.certPem), leafKey)).toMatch(/is not a CA certificate/);
    const open = file(ca.keyPem);
    chmodSync(open, 0o644);
    expect(await refusal(certFile, open)).toMatch(/readable or writable by other users \(mode 644\).*chmod 600/);
  });

  it('refuses an expired CA, naming when it expired', async () => {
    const old = await createAuthority({ now: new Date(Date.now() - 3 * 24 * HOUR), validityDays: 1 });
    const written = await writeAuthority(join(dir, 'expired'), old);
    expect(await refusal(written.certFile, written.keyFile)).toMatch(/ca\.crt expired on \d{4}-/);
  });

  it.each([
    ['RSA', ['-newkey', 'rsa:2048'], 'sha256WithRSAEncryption'],
    ['ECDSA P-384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1'], 'ecdsa-with-SHA384'],
  ])('loads an openssl-made %s CA and signs leaves that verify', async (label, keyArgs, algorithm) => {
    const key = join(dir, `${label}.key`);
    const cert = join(dir, `${label}.crt`);
    const made = await openssl('req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/C=XX/O=Corp/CN=corp CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    expect(made.code, made.out).toBe(0);
    chmodSync(key, 0o600);
    const leaf = await (await LeafMinter.create(await loadAuthority(cert, key))).mint('corp.example');
    const pem = file(leaf.certPem);
    expect((await openssl('verify', '-CAfile', cert, pem)).out).toContain(': OK');
    expect((await openssl('x509', '-in', pem, '-noout', '-text')).out).toContain(`Signature Algorithm: ${algorithm}`);
  });
});

describe('DER encoding', () => {
  it('writes identifiers, integers, lengths and times as DER requires', () => {
    expect(der.objectIdentifier('1.2.840.10045.4.3.2').toString('hex')).toBe('06082a8648ce3d040302');
    expect(der.unsignedInteger(Buffer.from([0x80, 1])).toString('hex')).toBe('0203008001');
    expect(der.unsignedInteger(Buffer.from([0, 0, 5])).toString('hex')).toBe('020105');
    expect(der.octetString(Buffer.alloc(200)).subarray(0, 3).toString('hex')).toBe('0481c8');
    expect(der.octetString(Buffer.alloc(300)).subarray(0, 4).toString('hex')).toBe('0482012c');
    expect(der.time(new Date('2049-12-31T23:59:59Z')).toString('latin1')).toBe('\x17\x0d491231235959Z');
    expect(der.time(new Date('2050-01-01T00:00:00Z')).toString('latin1')).toBe('\x18\x0f20500101000000Z');
    const outer = der.sequence(der.octetString(Buffer.alloc(300)), der.TRUE);
    expect(der.children(outer).map((c) => c.length)).toEqual([304, 3]);
  });
});

describe('an intermediate CA', () => {
  it('is sent after each leaf, so clients that hold only the root verify the chain; a root is not sent', async () => {
    const run = async (...args: string[]): Promise<void> => {
      const r = await openssl(...args);
      expect(r.code, r.out).toBe(0);
    };
    const [rootKey, rootCert, midKey, midCsr, midCert, ext] = ['root.key', 'root.crt', 'mid.key', 'mid.csr', 'mid.crt', 'mid.ext'].map((n) => join(dir, n)) as [string, string, string, string, string, string];
    await run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', rootKey, '-out', rootCert, '-days', '2', '-subj', '/CN=corp root',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    await run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', midKey, '-out', midCsr, '-subj', '/CN=corp inspection');
    writeFileSync(ext, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await run('x509', '-req', '-in', midCsr, '-CA', rootCert, '-CAkey', rootKey, '-CAcreateserial', '-out', midCert, '-days', '2', '-extfile', ext);
    chmodSync(midKey, 0o600);
    const leaf = await (await LeafMinter.create(await loadAuthority(midCert, midKey))).mint('inner.example');
    expect(pemCertificates(leaf.chainPem)).toHaveLength(2);
    const server = tls.createServer({ key: leaf.keyPem, cert: leaf.chainPem }, (s) => s.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'inner.example', ca: readFileSync(rootCert, 'utf8') });
        let text = '';
        socket.on('data', (d: Buffer) => (text += d.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(body).toBe('ok');
    } finally {
      server.close();
    }
    const root = await (await LeafMinter.create(await createAuthority())).mint('x.example');
    expect(pemCertificates(root.chainPem)).toEqual([root.certPem]);
  });
});

describe('leaf certificates', () => {
  let ca: CreatedAuthority;
  let caFile: string;
  let minter: LeafMinter;
  beforeAll(async () => {
    ca = await createAuthority();
    caFile = file(ca.certPem, 'leaf-ca.crt');
    minter = await LeafMinter.create(ca);
  });

  it('name the host as a DNS SAN, for serverAuth, valid an hour back and a day ahead', async () => {
    const now = new Date(Math.floor(Date.now() / 1000) * 1000 + 400); // validity counts whole seconds
    const leaf = await minter.mint('API.Example.COM.', now);
    expect(leaf.host).toBe('api.example.com');
    const pem = file(leaf.certPem);
    expect((await openssl('verify', '-CAfile', caFile, '-purpose', 'sslserver', '-verify_hostname', 'api.example.com', pem)).out).toContain(': OK');
    expect((await openssl('verify', '-CAfile', caFile, '-verify_hostname', 'other.example.com', pem)).code).not.toBe(0);
    const text = (await openssl('x509', '-in', pem, '-noout', '-text')).out;
    expect(text).toMatch(/Subject Alternative Name: \s+DNS:api\.example\.com\s/);
    expect(text).toMatch(/Extended Key Usage: \s+TLS Web Server Authentication\s/);
    expect(text).toMatch(/CA:FALSE/);
    expect(text).toMatch(/NIST CURVE: P-256/);
    expect(leaf.notBefore.getTime()).toBe(now.getTime() - 400 - HOUR);
    expect(leaf.notAfter.getTime()).toBe(now.getTime() - 400 + LEAF_LIFETIME_MS);
    // Node's own parser agrees: issued by the CA, signature valid, the same validity.
    const parsed = new X509Certificate(leaf.certPem);
    expect(parsed.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(parsed.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(new Date(parsed.validTo).getTime()).toBe(leaf.notAfter.getTime());
    expect(parsed.checkHost('api.example.com')).toBe('api.example.com');
  });

  it('name an IP literal as an IP address SAN (IPv4 and IPv6)', async () => {
    for (const [host, shown] of [['127.0.0.1', 'IP Address:127.0.0.1'], ['[2001:db8::7]', 'IP Address:2001:DB8:0:0:0:0:0:7']] as const) {
      const pem = file((await minter.mint(host)).certPem);
      const bare = host.replace(/[[\]]/g, '');
      expect((await openssl('verify', '-CAfile', caFile, '-verify_ip', bare, pem)).out).toContain(': OK');
      expect((await openssl('x509', '-in', pem, '-noout', '-ext', 'subjectAltName')).out).toContain(shown);
    }
  });

  it('carry a name longer than a common name allows in a critical SAN only, under an empty subject', async () => {
    const long = `${'a'.repeat(60)}.example.com`;
    const pem = file((await minter.mint(long)).certPem);
    expect((await openssl('verify', '-CAfile', caFile, '-verify_hostname', long, pem)).out).toContain(': OK');
    const text = (await openssl('x509', '-in', pem, '-noout', '-text')).out;
    expect(text).toMatch(/Subject: \n/);
    expect(text).toMatch(/Subject Alternative Name: critical/);
  });

  it('use one key pair per minter, or a new one per leaf when asked', async () => {
    const a = await minter.mint('one.example');
    const b = await minter.mint('two.example');
    expect(a.keyPem).toBe(b.keyPem);
    const perLeaf = await LeafMinter.create(ca, { keyPerLeaf: true });
    expect((await perLeaf.mint('one.example')).keyPem).not.toBe((await perLeaf.mint('two.example')).keyPem);
  });

  it('never outlive the CA, and are not minted by an expired CA', async () => {
    const now = Date.now();
    const short = await createAuthority({ now: new Date(now), validityDays: 1 });
    const shortMinter = await LeafMinter.create(short);
    const late = await shortMinter.mint('late.example', new Date(now + 23 * HOUR));
    expect(late.notAfter.getTime()).toBe(short.cert.notAfter.getTime());
    await expect(shortMinter.mint('late.example', new Date(now + 25 * HOUR))).rejects.toThrow(/the CA expired/);
  });

  it('refuse names a certificate cannot carry', async () => {
    for (const bad of ['', '*.example.com', 'a..b', 'exa mple.com', '-x.example']) await expect(minter.mint(bad)).rejects.toThrow(/not a host name/);
  });
});

describe('the leaf cache', () => {
  let ca: CreatedAuthority;
  let minter: LeafMinter;
  beforeAll(async () => {
    ca = await createAuthority();
    minter = await LeafMinter.create(ca);
  });

  it('mints once for concurrent first requests for one host', async () => {
    const cache = new LeafCache(minter);
    const leaves = await Promise.all(Array.from({ length: 20 }, () => cache.get('busy.example')));
    expect(cache.minted).toBe(1);
    expect(new Set(leaves).size).toBe(1);
    expect(await cache.get('BUSY.example.')).toBe(leaves[0]);
    expect(cache.minted).toBe(1);
  });

  it('rejects (never throws) for a name no certificate may carry, and caches nothing for it', async () => {
    const cache = new LeafCache(minter);
    const attempt = cache.get('bad name.example');
    await expect(attempt).rejects.toThrow(/not a host name/);
    expect([cache.size, cache.minted]).toEqual([0, 0]);
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    const cache = new LeafCache(minter, { maxEntries: 2 });
    const a = await cache.get('a.example');
    await cache.get('b.example');
    await cache.get('a.example'); // a is now the most recent
    await cache.get('c.example'); // evicts b
    expect(cache.size).toBe(2);
    expect(await cache.get('a.example')).toBe(a);
    expect(cache.minted).toBe(3);
    await cache.get('b.example');
    expect(cache.minted).toBe(4);
  });

  it('never serves a leaf past or near its expiry (clock injected)', async () => {
    let now = Math.floor(Date.now() / 1000) * 1000;
    const cache = new LeafCache(minter, { clock: () => now, renewBeforeMs: HOUR });
    const first = await cache.get('clock.example');
    now += 22 * HOUR + 59 * 60_000; // an hour and a minute before the end: still served
    expect(await cache.get('clock.example')).toBe(first);
    now += 2 * 60_000; // inside the last hour: replaced
    const second = await cache.get('clock.example');
    expect(second).not.toBe(first);
    expect(second.notAfter.getTime()).toBe(now + LEAF_LIFETIME_MS);
    now = second.notAfter.getTime() + 1; // far past (a suspended machine): never the old one
    const third = await cache.get('clock.example');
    expect(third.notAfter.getTime()).toBeGreaterThan(now);
    expect(cache.peek('clock.example')).toBe(third);
    now -= 3 * 24 * HOUR; // the clock stepped back before notBefore: minted again
    expect(cache.peek('clock.example')).toBeUndefined();
    expect(cache.minted).toBe(3);
  });

  it('serves real handshakes: curl and openssl s_client trust the leaf through the CA alone', async () => {
    const caFile = file(ca.certPem, 'handshake-ca.crt');
    const cache = new LeafCache(minter);
    const { port, server, names } = await leafServer(cache, '127.0.0.1');
    try {
      const byName = await exec('curl', ['-sS', '--max-time', '10', '--cacert', caFile, '--resolve', `shop.example:${port}:127.0.0.1`, `https://shop.example:${port}/`], { encoding: 'utf8' });
      expect(byName.stdout).toBe('hello\n');
      expect(names).toContain('shop.example');
      const byIp = await exec('curl', ['-sS', '--max-time', '10', '--cacert', caFile, `https://127.0.0.1:${port}/`], { encoding: 'utf8' });
      expect(byIp.stdout).toBe('hello\n');
      const sClient = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'shop.example', '-verify_hostname', 'shop.example', '-verify_return_error', '-CAfile', caFile], { timeout: 10_000 }, (err, stdout, stderr) => resolve({ code: err ? (err as { code: number }).code : 0, out: stdout + stderr }));
        child.stdin?.end('');
      });
      // The exit code is not asserted: s_client may report the server's close after the answer.
      expect(sClient.out).toContain('Verify return code: 0 (ok)');
      expect(sClient.out).not.toMatch(/verify error/);
      // Without the CA the same client refuses the leaf.
      const untrusted = await exec('curl', ['-sS', '--max-time', '10', '--resolve', `shop.example:${port}:127.0.0.1`, `https://shop.example:${port}/`]).then(() => 'accepted', (e: { stderr: string }) => e.stderr);
      expect(untrusted).toMatch(/certificate/i);
    } finally {
      server.close();
    }
  });
});

describe('trust bundle and upstream verification', () => {
  it('the bundle holds the CA and every system root once; clients verify leaves with it', async () => {
    const ca = await createAuthority();
    const roots = systemRoots();
    expect(roots.length).toBeGreaterThan(50);
    const bundle = join(dir, 'bundle.pem');
    await writeTrustBundle(bundle, ca.certPem, [...roots, roots[0]!, ca.certPem]);
    expect(statSync(bundle).mode & 0o777).toBe(0o644);
    const pems = pemCertificates(readFileSync(bundle, 'utf8'));
    expect(pems).toHaveLength(roots.length + 1);
    expect(pems[0]).toBe(ca.certPem.trim());
    expect(trustBundleText(ca.certPem, roots)).toBe(readFileSync(bundle, 'utf8'));
    const leaf = await (await LeafMinter.create(ca)).mint('bundle.example');
    expect((await openssl('verify', '-CAfile', bundle, file(leaf.certPem))).out).toContain(': OK');
  });

  describe('upstream', () => {
    let upstreamCa: CreatedAuthority;
    let upstreamCaFile: string;
    let minter: LeafMinter;
    let servers: tls.Server[] = [];
    beforeAll(async () => {
      upstreamCa = await createAuthority();
      upstreamCaFile = file(upstreamCa.certPem, 'upstream-ca.crt');
      minter = await LeafMinter.create(upstreamCa);
    });
    afterAll(() => servers.forEach((s) => s.close()));

    const serve = async (leafHost: string, now?: Date): Promise<{ port: number; sni: string[] }> => {
      const leaf = await minter.mint(leafHost, now);
      const sni: string[] = [];
      const server = tls.createServer({ key: leaf.keyPem, cert: leaf.chainPem }, (s) => s.end('ok'));
      server.on('secureConnection', (s: tls.TLSSocket) => sni.push(String((s as unknown as { servername: string | false }).servername)));
      server.on('tlsClientError', () => undefined);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      return { port: (server.address() as AddressInfo).port, sni };
    };

    const connect = (trust: UpstreamTrust, host: string, port: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({ ...trust.connectOptions(host), host: '127.0.0.1', port });
        let body = '';
        socket.on('data', (d: Buffer) => (body += d.toString()));
        socket.on('end', () => resolve(body));
        socket.on('error', reject);
        socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
      });

    it('verifies against system roots + --upstream-ca, with SNI = the host', async () => {
      const { port, sni } = await serve('upstream.example');
      const trust = new UpstreamTrust(await loadUpstreamCas([upstreamCaFile]));
      expect(await connect(trust, 'upstream.example', port)).toBe('ok');
      expect(sni).toEqual(['upstream.example']);
    });

    it('classifies an untrusted, a mismatched and an expired certificate as upstream_tls_error with the code', async () => {
      const { port } = await serve('upstream.example');
      const untrusted = await connect(new UpstreamTrust(), 'upstream.example', port).catch((e: unknown) => e);
      expect(classifyUpstreamTlsError(untrusted, 'upstream.example')).toMatchObject({ kind: 'upstream_tls_error', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
      const trust = new UpstreamTrust([upstreamCa.certPem]);
      const mismatch = await connect(trust, 'other.example', port).catch((e: unknown) => e);
      const classified = classifyUpstreamTlsError(mismatch, 'other.example');
      expect(classified).toMatchObject({ kind: 'upstream_tls_error', code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
      expect(classified?.detail).toContain('certificate of other.example is not trusted');
      const old = await serve('old.example', new Date(Date.now() - 3 * 24 * HOUR));
      const expired = await connect(trust, 'old.example', old.port).catch((e: unknown) => e);
      expect(classifyUpstreamTlsError(expired, 'old.example')).toMatchObject({ code: 'CERT_HAS_EXPIRED' });
      const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      expect(classifyUpstreamTlsError(refused, 'x.example')).toBeNull();
    });

    it('checks an IP literal against IP SANs and sends no SNI for it', async () => {
      const { port, sni } = await serve('127.0.0.1');
      const trust = new UpstreamTrust([upstreamCa.certPem]);
      expect(trust.connectOptions('127.0.0.1').servername).toBeUndefined();
      expect(await connect(trust, '127.0.0.1', port)).toBe('ok');
      expect(sni).toEqual(['false']);
    });

    it('an ephemeral CA for one run: a day long, its leaves served, upstreams trusted through --upstream-ca', async () => {
      const inspection = await ephemeralInspectionTls({ upstreamCaFiles: [upstreamCaFile] });
      expect(inspection.ca.cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(24 * HOUR);
      const { port } = await serve('upstream.example');
      expect(await connect(inspection.upstream, 'upstream.example', port)).toBe('ok');
      await expect(loadInspectionTls(join(dir, 'no.crt'), join(dir, 'no.key'))).rejects.toThrow(CaFileError);
    });

    it('refuses an --upstream-ca file that is missing, holds no certificate, or one that does not parse', async () => {
      await expect(loadUpstreamCas([join(dir, 'missing.pem')])).rejects.toThrow(/cannot read the upstream CA file .*ENOENT/);
      await expect(loadUpstreamCas([file('nothing here')])).rejects.toThrow(/holds no PEM certificate/);
      // A PEM block whose body is not a certificate: refused at start, naming the file.
      const broken = file('-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n', 'broken.pem');
      await expect(loadUpstreamCas([broken])).rejects.toThrow(/broken\.pem holds a certificate that cannot be parsed/);
    });
  });
});
