// The in-process sock_diag lookup (native/sock-diag.c, compiled by scripts/build-native.sh into
// .cache/native/, one file per Node ABI): one netlink socket per network namespace, kept open,
// and a synchronous exact lookup that the kernel answers within the call. Absent (no compiler on
// the machine, no build for this Node yet) or failing, callers use the helper process or procfs.
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface SockDiagAddon {
  open(nsPath: string | null): number;
  lookup(fd: number, family: 4 | 6, src: string, sport: number, dst: string, dport: number): [state: number, inode: number] | null;
  close(fd: number): void;
}

/** The build for the Node running us: each release line has its own ABI number. */
export const SOCK_DIAG_ADDON_PATH = fileURLToPath(new URL(`../../.cache/native/sock-diag-abi${process.versions.modules}.node`, import.meta.url));

/** The addon, or null when it is not built or does not load here. */
export function loadSockDiagAddon(path = process.env.PORTCULLIS_SOCK_DIAG_ADDON ?? SOCK_DIAG_ADDON_PATH): SockDiagAddon | null {
  try {
    const module = { exports: {} as SockDiagAddon };
    process.dlopen(module, path);
    return module.exports;
  } catch {
    return null;
  }
}

/** Netlink sockets kept open, one per namespace; beyond this many, the least recently used is closed. */
const MAX_NAMESPACES = 64;

export class NativeSockDiag {
  /** Namespace (nsfs inode, 0 for our own) → netlink socket. */
  private readonly sockets = new Map<number, number>();

  constructor(private readonly addon: SockDiagAddon) {}

  /** [state, inode], null when no such socket; throws when the kernel or the namespace refuses. */
  lookup(anchorPid: number | undefined, family: 4 | 6, src: string, sport: number, dst: string, dport: number): [number, number] | null {
    return this.addon.lookup(this.socketFor(anchorPid), family, src, sport, dst, dport);
  }

  close(): void {
    for (const fd of this.sockets.values()) this.addon.close(fd);
    this.sockets.clear();
  }

  private socketFor(anchorPid: number | undefined): number {
    const nsPath = anchorPid === undefined ? null : `/proc/${anchorPid}/ns/net`;
    // Keyed by the namespace itself: a pid can be reused by a process in another namespace.
    const key = nsPath === null ? 0 : statSync(nsPath).ino;
    let fd = this.sockets.get(key);
    if (fd === undefined) {
      fd = this.addon.open(nsPath);
      for (const [oldKey, oldFd] of this.sockets) {
        if (this.sockets.size < MAX_NAMESPACES) break;
        this.addon.close(oldFd);
        this.sockets.delete(oldKey);
      }
    } else {
      this.sockets.delete(key);
    }
    this.sockets.set(key, fd);
    return fd;
  }
}
