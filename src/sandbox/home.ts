// CMD's HOME lives in the run's private /tmp (mounts.ts) and ends with it. Earlier versions kept
// it in the host's /tmp as portcullis-home-<pid>-<n>, removed by root at the end of the run: a
// killed run's one stays behind. Such a tree is its owner's (the sandbox user's), who may have
// left symlinks in it: it is removed as that owner, by `rm` (which never follows a link), never
// by root.
import { lstatSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../netns/command.js';
import { isProcessAlive } from '../netns/processes.js';

const LEGACY_PREFIX = 'portcullis-home-';
/** Never root's group for the removal (the traditional nogroup gid). */
const NO_GROUP = 65534;

/** Homes of earlier runs whose process is gone. */
export async function removeLegacyHomes(root = tmpdir()): Promise<void> {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  const pattern = new RegExp(`^${LEGACY_PREFIX}(\\d+)-\\d+$`);
  for (const entry of entries) {
    const match = pattern.exec(entry);
    if (!match || Number(match[1]) === process.pid || isProcessAlive(Number(match[1]))) continue;
    await removeAsOwner(join(root, entry)).catch(() => undefined);
  }
}

/** Removes `path` with the owner's rights only; a root-owned path is left alone. */
export async function removeAsOwner(path: string): Promise<void> {
  const stat = lstatSync(path);
  if (stat.uid === 0) return;
  await runCommand('setpriv', [`--reuid=${stat.uid}`, `--regid=${stat.gid === 0 ? NO_GROUP : stat.gid}`, '--clear-groups', '--', 'rm', '-rf', '--one-file-system', '--', path]);
}
