// The Go load client (bench/load/main.go) for the benches' rate phases: built on first use into
// .cache/bench/load (standard library only), run as a process of its own on every core.
// BENCH_CLIENT=node keeps the benches' Node clients; without `go` they are used too.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE = join(ROOT, 'bench/load/main.go');
export const LOAD_CLIENT = join(ROOT, '.cache/bench/load');

/** The built client's path, or null when the Node clients are to be used (asked for, or no `go`). */
export function ensureLoadClient() {
  if (process.env.BENCH_CLIENT === 'node') return null;
  if (existsSync(LOAD_CLIENT) && statSync(LOAD_CLIENT).mtimeMs >= statSync(SOURCE).mtimeMs) return LOAD_CLIENT;
  try {
    mkdirSync(join(ROOT, '.cache/bench'), { recursive: true });
    execFileSync('go', ['build', '-o', LOAD_CLIENT, SOURCE], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    return LOAD_CLIENT;
  } catch (err) {
    console.error(`the Go load client could not be built (${err.message.split('\n')[0]}): the Node clients measure the rates`);
    return null;
  }
}

/** Runs the client with `flags` ({mode, proxy, target, ...}); resolves with its {done, failed, seconds}. */
export async function runLoad(client, flags) {
  const args = Object.entries(flags).flatMap(([name, value]) => [`-${name}`, String(value)]);
  const { stdout } = await promisify(execFile)(client, args, { encoding: 'utf8', timeout: 120_000 });
  return JSON.parse(stdout);
}
