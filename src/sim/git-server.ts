// A git host for the simulated internet: bare repositories under a root directory, served over
// HTTPS by `git http-backend` run as CGI (the "smart" protocol: clone, fetch and push).
// startGitServer() runs this module inside the simulated internet's namespace; its stdin is the
// server's lifeline, as for serve.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IssuedCertificate } from './ca.js';

export interface GitServerConfig {
  /** Directory holding the bare repositories (`NAME.git`). */
  projectRoot: string;
  port: number;
  cert: IssuedCertificate;
}

export interface GitServer {
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const GIT_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1', HOME: '/nonexistent' };

/** The CGI response head: `Status:` and the other header lines, up to the blank line. */
export function parseCgiHead(head: string): { status: number; headers: Array<[string, string]> } {
  let status = 200;
  const headers: Array<[string, string]> = [];
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers.push([name, value]);
  }
  return { status, headers };
}

function cgiEnvironment(req: IncomingMessage, projectRoot: string): NodeJS.ProcessEnv {
  const url = new URL(req.url ?? '/', 'https://git.invalid');
  const header = (name: string): string => String(req.headers[name] ?? '');
  return {
    ...GIT_ENV,
    GIT_PROJECT_ROOT: projectRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    CONTENT_TYPE: header('content-type'),
    CONTENT_LENGTH: header('content-length'),
    HTTP_CONTENT_ENCODING: header('content-encoding'),
    HTTP_GIT_PROTOCOL: header('git-protocol'),
    // An authenticated user: http-backend would accept a push, so a refused push is the proxy's doing.
    REMOTE_USER: 'sim',
    REMOTE_ADDR: req.socket.remoteAddress ?? '',
  };
}

function handle(projectRoot: string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const cgi = spawn('git', ['http-backend'], { env: cgiEnvironment(req, projectRoot), stdio: ['pipe', 'pipe', 'ignore'] });
    req.pipe(cgi.stdin);
    cgi.stdin.on('error', () => undefined);
    let head = Buffer.alloc(0);
    let headDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const text = head.toString('latin1');
      const end = text.search(/\r?\n\r?\n/);
      if (end < 0) return;
      const separator = /\r?\n\r?\n/.exec(text)!;
      const parsed = parseCgiHead(text.slice(0, end));
      res.writeHead(parsed.status, parsed.headers.flat());
      headDone = true;
      const rest = head.subarray(end + separator[0].length);
      if (rest.length > 0) res.write(rest);
    });
    cgi.on('close', () => {
      if (!headDone) res.writeHead(502).end();
      else res.end();
    });
    cgi.on('error', () => (headDone ? res.destroy() : res.writeHead(502).end()));
  };
}

/** A bare repository `NAME.git` under `projectRoot` holding one commit (a README) on `main`. */
export function createBareRepository(projectRoot: string, name: string, readme = 'hello from the simulated internet\n'): string {
  const bare = join(projectRoot, `${name}.git`);
  const seed = mkdtempSync(join(projectRoot, '.seed-'));
  const git = (args: string[], cwd: string): void => {
    const result = spawnSync('git', args, { cwd, env: { ...GIT_ENV, GIT_AUTHOR_NAME: 'sim', GIT_AUTHOR_EMAIL: 'sim@sim.invalid', GIT_COMMITTER_NAME: 'sim', GIT_COMMITTER_EMAIL: 'sim@sim.invalid' }, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`git ${args.join(' ')}: ${result.stderr}`);
  };
  try {
    git(['init', '-q', '-b', 'main', seed], projectRoot);
    spawnSync('sh', ['-c', 'printf "%s" "$1" > README', 'sh', readme], { cwd: seed });
    git(['add', 'README'], seed);
    git(['commit', '-q', '-m', 'first commit'], seed);
    git(['clone', '-q', '--bare', seed, bare], projectRoot);
    git(['config', 'http.receivepack', 'true'], bare);
  } finally {
    rmSync(seed, { recursive: true, force: true });
  }
  return bare;
}

/** This module's compiled file (in dist/ when the caller runs from TypeScript source). */
function scriptPath(): string {
  const sibling = fileURLToPath(import.meta.url).replace(/\.ts$/, '.js');
  if (existsSync(sibling) && sibling.endsWith('.js')) return sibling;
  const built = fileURLToPath(new URL('../../dist/sim/git-server.js', import.meta.url));
  if (existsSync(built)) return built;
  throw new Error('git server: dist/sim/git-server.js is missing; run `npm run build` first');
}

/** Serves `config` from inside network namespace `netns` (on every address, `config.port`). */
export async function startGitServer(netns: string, config: GitServerConfig): Promise<GitServer> {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', netns, process.execPath, scriptPath()], { stdio: ['pipe', 'pipe', 'pipe'] });
  const onExit = (): void => void child.kill('SIGKILL');
  process.once('exit', onExit);
  child.stdin!.write(`${JSON.stringify(config)}\n`);
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`git server: not ready in time ${output}`)), READY_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`git server exited with code ${code}: ${output.trim()}`));
    });
  }).catch((err: unknown) => {
    process.off('exit', onExit);
    child.kill('SIGKILL');
    throw err;
  });
  return {
    close: async () => {
      process.off('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin!.end();
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2000))]);
    },
  };
}

async function main(): Promise<void> {
  const line = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      if (!buffered.includes('\n')) return;
      process.stdin.off('data', onData);
      resolve(buffered.slice(0, buffered.indexOf('\n')));
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', () => reject(new Error('no configuration on stdin')));
  });
  const config = JSON.parse(line) as GitServerConfig;
  const server = https.createServer({ cert: config.cert.certPem, key: config.cert.keyPem }, handle(config.projectRoot));
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: config.port, host: '::' }, () => resolve());
  });
  process.stdout.write('ready\n');
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`git server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
