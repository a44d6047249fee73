// What CMD sees of the file system, prepared in its own mount namespace before it starts:
// empty private tmpfs over the places where host services keep sockets, locks and shared
// memory (/run, /var/run, /tmp, /dev/shm: the system D-Bus, nscd, container runtimes' sockets
// are out of reach), a HOME inside the private /tmp, and files bound over host files. The rest
// of the file system is the host's, as the sandbox user's permissions allow. Pure.
import { DISTRIBUTION_BUNDLES } from '../tls/roots.js';
import type { SandboxUser } from './user.js';

/** CMD's HOME: in the private /tmp, so it ends with the run and root never deletes it. */
export const SANDBOX_HOME = '/tmp/home';

export interface TmpfsMount {
  target: string;
  /** Octal mode of the mount's root. */
  mode: string;
}

export interface BindMount {
  /** A host file, read before CMD starts. */
  source: string;
  /** Where CMD sees it (a symlink is followed, e.g. /etc/resolv.conf → /run/…). */
  target: string;
  /** Bound only where the target is a file already (a system path this distribution lacks is skipped). */
  ifPresent?: boolean;
}

export interface SandboxMounts {
  tmpfs: TmpfsMount[];
  /** Bound after the tmpfs mounts, in order. */
  binds: BindMount[];
  home: { path: string; uid: number; gid: number };
}

export interface MountOptions {
  /** The resolv.conf naming the DNS proxy. */
  resolvConf: string;
  user: SandboxUser;
  /** The run's trust bundle (its CA and the system's roots): bound over the system's bundles. */
  trustBundle?: string;
  /** Host files CMD must not read (credential sources): /dev/null is bound over each. */
  hidden?: string[];
}

/**
 * The trust bundle over every system bundle this distribution has, so that programs that read
 * only the system store (openssl's default paths, Python's default context) trust the run's CA.
 * Pure.
 */
export function trustBundleBinds(bundle: string, systemBundles: readonly string[] = DISTRIBUTION_BUNDLES): BindMount[] {
  return systemBundles.map((target) => ({ source: bundle, target, ifPresent: true }));
}

export function sandboxMounts(opts: MountOptions): SandboxMounts {
  return {
    tmpfs: [
      { target: '/run', mode: '755' },
      // Usually a symlink to /run, covered then; a directory of its own otherwise.
      { target: '/var/run', mode: '755' },
      { target: '/tmp', mode: '1777' },
      { target: '/dev/shm', mode: '1777' },
    ],
    // Files bound over the host's. `ip netns exec` binds the resolv.conf too, but where
    // /etc/resolv.conf links into /run that binding is under the private /run: bound again here.
    // This is the one list a file is added to for CMD to see it instead of the host's.
    binds: [
      { source: opts.resolvConf, target: '/etc/resolv.conf' },
      ...(opts.trustBundle !== undefined ? trustBundleBinds(opts.trustBundle) : []),
      ...(opts.hidden ?? []).map((target) => ({ source: '/dev/null', target })),
    ],
    home: { path: SANDBOX_HOME, uid: opts.user.uid, gid: opts.user.gid },
  };
}
