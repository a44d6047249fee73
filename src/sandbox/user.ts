// The account CMD runs as: never root. `--user` names one; otherwise the system account
// `portcullis-sandbox` is used, created on first use (no home, no login shell).
import { readFileSync } from 'node:fs';
import { runCommand } from '../netns/command.js';

export const DEFAULT_SANDBOX_USER = 'portcullis-sandbox';

export interface SandboxUser {
  name: string;
  uid: number;
  gid: number;
}

/** Finds `nameOrUid` in passwd text (name or numeric uid). Pure. */
export function findInPasswd(passwd: string, nameOrUid: string): SandboxUser | null {
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === nameOrUid || uid === nameOrUid) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return null;
}

async function lookup(nameOrUid: string): Promise<SandboxUser | null> {
  const local = findInPasswd(readFileSync('/etc/passwd', 'utf8'), nameOrUid);
  if (local) return local;
  try {
    // Accounts from NSS (LDAP, systemd-userdb…) are not in /etc/passwd.
    const { stdout } = await runCommand('getent', ['passwd', nameOrUid]);
    return findInPasswd(stdout, nameOrUid);
  } catch {
    return null;
  }
}

export class SandboxUserError extends Error {
  override name = 'SandboxUserError';
}

/**
 * The gid a numeric `--user` without a passwd entry gets: the system's group for nobody
 * (`nogroup`, or `nobody` where that is its name), never gid = uid (a group of that number may
 * exist and open files to its members). Null when there is none. Pure.
 */
export function noGroupGid(groupText: string): number | null {
  const gids = new Map<string, number>();
  for (const line of groupText.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name !== undefined && gid !== undefined && /^\d+$/.test(gid)) gids.set(name, Number(gid));
  }
  return gids.get('nogroup') ?? gids.get('nobody') ?? null;
}

async function numericUser(uid: string): Promise<SandboxUser> {
  let groups = '';
  try {
    groups = readFileSync('/etc/group', 'utf8');
  } catch {
    // no group file: refused below
  }
  const gid = noGroupGid(groups);
  if (gid === null) throw new SandboxUserError(`uid ${uid} has no passwd entry and this system has no "nogroup" group to give it: name an account with --user`);
  return { name: uid, uid: Number(uid), gid };
}

/**
 * The account for CMD. A numeric `--user` that has no passwd entry gets the nogroup group.
 * Root (uid 0) is refused: CMD must not be able to undo the fence.
 */
export async function resolveSandboxUser(requested: string | undefined): Promise<SandboxUser> {
  let user: SandboxUser | null;
  if (requested !== undefined) {
    user = await lookup(requested);
    if (user === null && /^\d+$/.test(requested)) user = await numericUser(requested);
    if (user === null) throw new SandboxUserError(`no such user: ${requested}`);
  } else {
    user = (await lookup(DEFAULT_SANDBOX_USER)) ?? (await createDefaultUser());
  }
  if (user.uid === 0 || user.gid === 0) throw new SandboxUserError(`refusing to run CMD as ${user.name} (uid ${user.uid}, gid ${user.gid}): the sandbox user must not be root`);
  return user;
}

async function createDefaultUser(): Promise<SandboxUser> {
  try {
    await runCommand('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'portcullis sandbox', DEFAULT_SANDBOX_USER]);
  } catch (err) {
    // Another run may have created it at the same moment.
    if (!/already exists/.test((err as Error).message)) throw new SandboxUserError(`cannot create the user ${DEFAULT_SANDBOX_USER}: ${(err as Error).message}`);
  }
  const user = await lookup(DEFAULT_SANDBOX_USER);
  if (user === null) throw new SandboxUserError(`the user ${DEFAULT_SANDBOX_USER} was created but cannot be found`);
  return user;
}
