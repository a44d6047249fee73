// A private, empty HOME for CMD (the sandbox account has none), removed at the end.
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isProcessAlive } from '../netns/processes.js';
import type { SandboxUser } from './user.js';

const PREFIX = 'portcullis-home-';

export function createSandboxHome(user: SandboxUser, n: number): string {
  removeStaleHomes();
  const dir = join(tmpdir(), `${PREFIX}${process.pid}-${n}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, user.uid, user.gid);
  return dir;
}

export function removeSandboxHome(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Homes of runs whose process is gone (killed before it could clean up). */
export function removeStaleHomes(): void {
  const root = tmpdir();
  if (!existsSync(root)) return;
  const pattern = new RegExp(`^${PREFIX}(\\d+)-\\d+$`);
  for (const entry of readdirSync(root)) {
    const match = pattern.exec(entry);
    if (!match || Number(match[1]) === process.pid || isProcessAlive(Number(match[1]))) continue;
    rmSync(join(root, entry), { recursive: true, force: true });
  }
}
