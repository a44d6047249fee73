// `portcullis run` makes CMD trust the run's CA with no flag on the client: the variables TLS
// clients read point at a bundle of the CA and the system's roots, and that bundle is bound over
// the system's own bundle in CMD's mount namespace (only there: the host's files do not change).
// The CA's key never comes within CMD's reach. Work files live under /var/tmp (CMD's /tmp is its
// own); the TLS servers run inside the sandbox, on its own loopback.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandboxEgress } from '../src/sandbox/egress.js';
import { sandboxEnvironment, TRUST_BUNDLE_VARIABLES } from '../src/sandbox/environment.js';
import { runSandbox } from '../src/sandbox/sandbox.js';
import { initScript } from '../src/sandbox/init-script.js';
import { sandboxMounts, trustBundleBinds } from '../src/sandbox/mounts.js';
import { FENCED_TRUST_ROOT } from '../src/sandbox/trust.js';
import { createAuthority, type CreatedAuthority } from '../src/tls/ca.js';
import { writeAuthority } from '../src/tls/ca-files.js';
import type { InspectionTls } from '../src/tls/inspection.js';
import { LeafMinter } from '../src/tls/leaf.js';
import { DISTRIBUTION_BUNDLES, pemCertificates } from '../src/tls/roots.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
// Nothing in these runs looks a name up; a lookup would go to the discard port on loopback.
const RESOLVER = '127.0.0.1:9';
const SYSTEM_BUNDLE = DISTRIBUTION_BUNDLES.find((file) => existsSync(file))!;
const LEAF_HOST = 'inside.trust.test';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work: string;
let policy: string;
let ca: CreatedAuthority;
let caDir: string;

function startRun(cmd: string[], args: string[] = []): { done: Promise<RunResult>; stdout: () => string } {
  const child = spawn(process.execPath, [CLI, 'run', '--quiet', '--policy', policy, '--resolver', RESOLVER, ...args, '--', ...cmd], {
    cwd: work,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
  const done = new Promise<RunResult>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { done, stdout: () => stdout };
}

const run = (cmd: string[], args: string[] = []): Promise<RunResult> => startRun(cmd, args).done;
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const body = (pem: string): string => pem.replace(/-----[A-Z ]+-----|\s/g, '');

async function until(check: () => boolean, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** `name=value` lines of an output. */
function fields(output: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of output.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) map.set(line.slice(0, at), line.slice(at + 1));
  }
  return map;
}

/** The host's `openssl verify` of `file` with its default store only. */
function hostVerify(file: string): number | null {
  const env = { ...process.env };
  delete env.SSL_CERT_FILE;
  delete env.SSL_CERT_DIR;
  return spawnSync('openssl', ['verify', file], { env, stdio: 'ignore' }).status;
}

beforeAll(async () => {
  work = mkdtempSync('/var/tmp/portcullis-trust-test-');
  chmodSync(work, 0o755);
  policy = join(work, 'policy.yaml');
  writeFileSync(policy, 'version: 1\nnetwork_policies: {}\n');
  mkdirSync(join(work, 'out'), { mode: 0o1777 });
  chmodSync(join(work, 'out'), 0o1777);

  // A CA for --ca-cert/--ca-key: its certificate world-readable, its key root's (0600) in a
  // directory the sandbox user may enter, so only the key's own mode keeps CMD out.
  ca = await createAuthority();
  caDir = join(work, 'ca');
  await writeAuthority(caDir, ca);
  chmodSync(caDir, 0o755);
  const leaf = await (await LeafMinter.create(ca)).mint(LEAF_HOST);
  writeFileSync(join(work, 'leaf.crt'), leaf.certPem, { mode: 0o644 });
  writeFileSync(join(work, 'leaf.key'), leaf.keyPem, { mode: 0o644 });

  // A TLS server on the sandbox's loopback presenting the leaf, for at most 20 s.
  writeFileSync(
    join(work, 'server.js'),
    `const fs = require('fs'), tls = require('tls'), w = process.argv[2];
tls.createServer({ key: fs.readFileSync(w + '/leaf.key'), cert: fs.readFileSync(w + '/leaf.crt') }, (s) => s.end('hello\\n'))
  .listen(8443, '127.0.0.1', () => fs.writeFileSync(process.env.HOME + '/listening', ''));
setTimeout(() => process.exit(0), 20000);
`,
  );
  // Clients with their default trust: "trusted" or why not.
  writeFileSync(
    join(work, 'client.py'),
    `import socket, ssl
ctx = ssl.create_default_context()
try:
    with ctx.wrap_socket(socket.create_connection(('127.0.0.1', 8443), timeout=5), server_hostname='${LEAF_HOST}') as s:
        print('trusted' if s.recv(16) == b'hello\\n' else 'no greeting')
except ssl.SSLCertVerificationError as e:
    print('untrusted', e.verify_message)
`,
  );
  writeFileSync(
    join(work, 'client.js'),
    `const s = require('tls').connect({ host: '127.0.0.1', port: 8443, servername: '${LEAF_HOST}' }, () => { console.log(s.authorized ? 'trusted' : 'unauthorized'); s.destroy(); });
s.on('error', (e) => console.log('untrusted', e.code));
`,
  );
  writeFileSync(
    join(work, 'inside.sh'),
    `W=$1
echo "uid=$(id -u)"
if cat "$W/ca/ca.key" > /dev/null 2>&1; then echo key=readable; else echo key=unreadable; fi
echo "bundle-first=$(openssl x509 -in "$SSL_CERT_FILE" -noout -fingerprint -sha256)"
echo "verify-system=$(env -u SSL_CERT_FILE -u SSL_CERT_DIR openssl verify "$W/leaf.crt" 2>&1 | tr '\\n' ' ')"
/usr/bin/node "$W/server.js" "$W" &
i=0; while [ ! -e "$HOME/listening" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
echo "python-env=$(/usr/bin/python3 "$W/client.py" 2>&1)"
echo "python-system=$(env -u SSL_CERT_FILE -u SSL_CERT_DIR -u REQUESTS_CA_BUNDLE /usr/bin/python3 "$W/client.py" 2>&1)"
echo "node-env=$(/usr/bin/node "$W/client.js" 2>&1)"
echo "node-without=$(env -u NODE_EXTRA_CA_CERTS /usr/bin/node "$W/client.js" 2>&1)"
kill $! 2>/dev/null
`,
  );
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('portcullis run: a CA made for the run', () => {
  it('points every client variable at a bundle of the run CA and the system roots, bound over the system bundle, and changes no host file', async () => {
    const hostBefore = sha256(SYSTEM_BUNDLE);
    const absentBefore = DISTRIBUTION_BUNDLES.filter((file) => !existsSync(file));
    const script = `for v in ${TRUST_BUNDLE_VARIABLES.join(' ')}; do echo "$v=$(printenv "$v")"; done
if cmp -s "$SSL_CERT_FILE" ${SYSTEM_BUNDLE}; then echo system=bundle; else echo system=other; fi
echo "dir=$(ls -A "$(dirname "$SSL_CERT_FILE")" | tr '\\n' ' ')"
echo BUNDLE-START; cat "$SSL_CERT_FILE"; echo BUNDLE-END
echo ready
i=0; while [ ! -e "$1/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`;
    const running = startRun(['sh', '-c', script, 'trust-env', join(work, 'out')]);
    expect(await until(() => running.stdout().includes('ready\n'))).toBe(true);

    // While CMD runs: the host's bundle is as it was, no mount covers it, nothing was created.
    const vars = fields(running.stdout());
    const bundleFile = vars.get('SSL_CERT_FILE')!;
    expect(sha256(SYSTEM_BUNDLE)).toBe(hostBefore);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('ca-bundle.pem');
    for (const file of absentBefore) expect(existsSync(file)).toBe(false);
    expect(existsSync(bundleFile)).toBe(true);
    writeFileSync(join(work, 'out', 'go'), '');
    const result = await running.done;
    expect(result.code, result.stderr).toBe(0);

    for (const name of TRUST_BUNDLE_VARIABLES) expect(vars.get(name), name).toBe(bundleFile);
    expect(bundleFile.startsWith(`${FENCED_TRUST_ROOT}/`)).toBe(true);
    // Programs that read only the system's path read the same bundle.
    expect(vars.get('system')).toBe('bundle');
    // Its directory holds the bundle and nothing else: no key.
    expect(vars.get('dir')?.trim()).toBe('ca-bundle.pem');

    const bundleText = result.stdout.slice(result.stdout.indexOf('BUNDLE-START'), result.stdout.indexOf('BUNDLE-END'));
    expect(bundleText).not.toMatch(/PRIVATE KEY/);
    const pems = pemCertificates(bundleText);
    const first = new X509Certificate(pems[0]!);
    expect(first.ca).toBe(true);
    expect(first.subject).toMatch(/portcullis TLS inspection CA/);
    const inBundle = new Set(pems.map(body));
    const systemRoots = pemCertificates(readFileSync(SYSTEM_BUNDLE, 'utf8'));
    expect(systemRoots.length).toBeGreaterThan(10);
    for (const root of systemRoots) expect(inBundle.has(body(root))).toBe(true);

    // After the run: the host's bundle unchanged, the run's bundle gone.
    expect(sha256(SYSTEM_BUNDLE)).toBe(hostBefore);
    expect(existsSync(bundleFile)).toBe(false);

    // Another run, another CA.
    const again = await run(['sh', '-c', 'openssl x509 -in "$SSL_CERT_FILE" -noout -fingerprint -sha256']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/Fingerprint=/);
    expect(again.stdout).not.toContain(first.fingerprint256);
  });

  it('hands the proxy the CA whose certificate CMD trusts, and CMD nothing of its key', async () => {
    let inspection: InspectionTls | undefined;
    const seen = join(work, 'out', 'seen.pem');
    const messages: string[] = [];
    const code = await runSandbox({
      policyFile: policy,
      command: ['sh', '-c', 'cat "$SSL_CERT_FILE" > "$1"', 'seen', seen],
      resolver: { host: '127.0.0.1', port: 9 },
      quiet: true,
      startEgress: async (ctx) => {
        inspection = ctx.inspection;
        return startSandboxEgress(ctx);
      },
      out: new Writable({ write: (chunk: Buffer, _enc, done) => void (messages.push(chunk.toString()), done()) }),
    });
    expect(code, messages.join('')).toBe(0);
    expect(inspection).toBeDefined();
    const trusted = pemCertificates(readFileSync(seen, 'utf8'));
    expect(body(trusted[0]!)).toBe(body(inspection!.ca.certPem));
    const keyPem = (inspection!.ca as Partial<CreatedAuthority>).keyPem;
    expect(keyPem).toMatch(/PRIVATE KEY/);
    expect(readFileSync(seen, 'utf8')).not.toContain(body(keyPem!).slice(0, 40));
    // The leaves the proxy would present chain to it.
    const leaf = await inspection!.leaves.get('api.example.test');
    expect(new X509Certificate(leaf.certPem).verify(new X509Certificate(inspection!.ca.certPem).publicKey)).toBe(true);
  });
});

describe('portcullis run: leftovers', () => {
  it("removes the bundle directory of a run that was killed outright, not a live run's", async () => {
    const dead = spawnSync('true').pid!;
    const stale = join(FENCED_TRUST_ROOT, `portcullis-trust-${dead}-zzzzzz`);
    const live = join(FENCED_TRUST_ROOT, `portcullis-trust-${process.pid}-zzzzzz`);
    try {
      for (const dir of [stale, live]) {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'ca-bundle.pem'), 'left behind\n');
      }
      const result = await run(['true']);
      expect(result.code, result.stderr).toBe(0);
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(live)).toBe(true);
    } finally {
      rmSync(stale, { recursive: true, force: true });
      rmSync(live, { recursive: true, force: true });
    }
  });
});

describe('portcullis run --ca-cert --ca-key', () => {
  it('trusts the given CA in the system store and through the variables (openssl, python3, node), and CMD cannot read its key', async () => {
    const result = await run(['sh', join(work, 'inside.sh'), work], ['--ca-cert', join(caDir, 'ca.crt'), '--ca-key', join(caDir, 'ca.key')]);
    expect(result.code, result.stderr).toBe(0);
    const out = fields(result.stdout);
    expect(Number(out.get('uid'))).toBeGreaterThan(0);
    // The key is root's, mode 0600, in a directory CMD may enter: CMD cannot read it.
    expect(out.get('key')).toBe('unreadable');
    // The bundle starts with the given CA.
    expect(out.get('bundle-first')).toContain(new X509Certificate(ca.certPem).fingerprint256);
    // openssl with its default store (no -CAfile, no SSL_CERT_FILE) accepts the leaf inside the
    // run — the bind mount — while the host's store does not.
    expect(out.get('verify-system')).toMatch(/leaf\.crt: OK/);
    expect(hostVerify(join(work, 'leaf.crt'))).not.toBe(0);
    // Python's default context trusts the server's leaf, by the variable and by the system store.
    expect(out.get('python-env')).toBe('trusted');
    expect(out.get('python-system')).toBe('trusted');
    // Node trusts it through NODE_EXTRA_CA_CERTS (it does not read the system store), and only so.
    expect(out.get('node-env')).toBe('trusted');
    expect(out.get('node-without')).toMatch(/^untrusted /);
  });

  it('refuses a CA key the sandbox user owns, before CMD runs', async () => {
    const uid = Number(spawnSync('id', ['-u', 'portcullis-sandbox'], { encoding: 'utf8' }).stdout.trim());
    expect(uid).toBeGreaterThan(0);
    const owned = join(work, 'owned.key');
    copyFileSync(join(caDir, 'ca.key'), owned);
    chmodSync(owned, 0o600);
    chownSync(owned, uid, uid);
    const result = await run(['echo', 'ran'], ['--ca-cert', join(caDir, 'ca.crt'), '--ca-key', owned]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${owned} belongs to the sandbox user`);
    expect(result.stdout).not.toContain('ran');
  });

  it('refuses --ca-cert without --ca-key, and a key other users can read', async () => {
    const alone = await run(['echo', 'ran'], ['--ca-cert', join(caDir, 'ca.crt')]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--ca-cert and --ca-key go together/);
    const open = join(work, 'open.key');
    copyFileSync(join(caDir, 'ca.key'), open);
    chmodSync(open, 0o644);
    const lax = await run(['echo', 'ran'], ['--ca-cert', join(caDir, 'ca.crt'), '--ca-key', open]);
    expect(lax.code).toBe(2);
    expect(lax.stderr).toMatch(/readable or writable by other users/);
    expect(lax.stdout).not.toContain('ran');
  });
});

describe('portcullis run --upstream-ca', () => {
  it('adds the upstream CAs to the bundle CMD trusts, and refuses a file without a certificate', async () => {
    const upstream = await createAuthority();
    const file = join(work, 'upstream.pem');
    writeFileSync(file, upstream.certPem);
    const result = await run(['sh', '-c', 'cat "$SSL_CERT_FILE"'], ['--upstream-ca', file]);
    expect(result.code, result.stderr).toBe(0);
    const bodies = pemCertificates(result.stdout).map(body);
    expect(bodies).toContain(body(upstream.certPem));

    const empty = join(work, 'empty.pem');
    writeFileSync(empty, 'no certificate here\n');
    const bad = await run(['echo', 'ran'], ['--upstream-ca', empty]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${empty} holds no PEM certificate`);
  });
});

describe('portcullis run --no-fence', () => {
  it('still points the variables at a bundle with a run CA, removed after the run', async () => {
    const result = await run(['sh', '-c', 'echo "file=$SSL_CERT_FILE"; openssl x509 -in "$SSL_CERT_FILE" -noout -subject'], ['--no-fence']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/portcullis TLS inspection CA/);
    const file = fields(result.stdout).get('file')!;
    expect(file).toMatch(/ca-bundle\.pem$/);
    expect(existsSync(file)).toBe(false);
  });
});

describe('the sandbox init: the trust bundle over the system bundles', () => {
  it('binds over each bundle that is a file (through a link, as on Fedora), skips one that is missing or a directory, and changes nothing of the host', () => {
    const dir = mkdtempSync('/var/tmp/portcullis-trust-bind-');
    try {
      writeFileSync(join(dir, 'bundle.pem'), 'run bundle\n');
      writeFileSync(join(dir, 'extracted.pem'), 'system bundle\n');
      spawnSync('ln', ['-s', join(dir, 'extracted.pem'), join(dir, 'ca-bundle.crt')]);
      mkdirSync(join(dir, 'a-directory'));
      const targets = [join(dir, 'ca-bundle.crt'), join(dir, 'missing.pem'), join(dir, 'a-directory')];
      mkdirSync(join(dir, 'private'));
      const mounts = {
        tmpfs: [{ target: join(dir, 'private'), mode: '755' }],
        binds: trustBundleBinds(join(dir, 'bundle.pem'), targets),
        home: { path: join(dir, 'private', 'home'), uid: 65534, gid: 65534 },
      };
      const r = spawnSync('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', initScript(mounts), 'init', 'sh', '-c', `cat ${targets[0]}; ls -A ${dir}`], { encoding: 'utf8', timeout: 10_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('run bundle\na-directory\nbundle.pem\nca-bundle.crt\nextracted.pem\nprivate\n');
      // Outside that namespace nothing changed, and nothing was created.
      expect(readFileSync(targets[0]!, 'utf8')).toBe('system bundle\n');
      expect(existsSync(join(dir, 'missing.pem'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the trust a run injects (pure)', () => {
  it("replaces the caller's trust variables with the bundle, and keeps them when there is none", () => {
    const caller = { SSL_CERT_FILE: '/caller/ca.pem', NODE_EXTRA_CA_CERTS: '/caller/extra.pem', PATH: '/usr/bin' };
    const env = sandboxEnvironment(caller, { proxyUrl: 'http://198.19.0.1:3128', trustBundle: '/var/lib/portcullis/trust/x/ca-bundle.pem' });
    for (const name of TRUST_BUNDLE_VARIABLES) expect(env[name], name).toBe('/var/lib/portcullis/trust/x/ca-bundle.pem');
    expect(env.PATH).toBe('/usr/bin');
    expect(sandboxEnvironment(caller, { proxyUrl: 'http://198.19.0.1:3128' }).SSL_CERT_FILE).toBe('/caller/ca.pem');
  });

  it('lists the bundle over each distribution bundle, optional, after the resolv.conf, in the one list of binds', () => {
    const mounts = sandboxMounts({ resolvConf: '/etc/netns/n/resolv.conf', user: { name: 'u', uid: 1000, gid: 1000 }, trustBundle: '/b.pem' });
    expect(mounts.binds).toEqual([
      { source: '/etc/netns/n/resolv.conf', target: '/etc/resolv.conf' },
      ...DISTRIBUTION_BUNDLES.map((target) => ({ source: '/b.pem', target, ifPresent: true })),
    ]);
    expect(initScript(mounts)).toContain(`bind_if_present '/b.pem' '/etc/ssl/certs/ca-certificates.crt'`);
  });
});
