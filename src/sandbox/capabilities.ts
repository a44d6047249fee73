// Whether this process can build a fenced sandbox: it needs CAP_NET_ADMIN (veth, nft),
// CAP_SYS_ADMIN (`ip netns` mounts) and CAP_SETUID/CAP_SETGID (dropping to the sandbox user).
import { readFileSync } from 'node:fs';

const CAP_SETGID = 6;
const CAP_SETUID = 7;
const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

export interface FenceCapability {
  ok: boolean;
  /** Set when !ok: what is missing, to be printed once. */
  why?: string;
}

/** Reads the `CapEff:` line of /proc/<pid>/status text. Pure. */
export function effectiveCapabilities(statusText: string): bigint | null {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(statusText);
  return match ? BigInt(`0x${match[1]}`) : null;
}

export function fenceCapability(statusText: string): FenceCapability {
  const caps = effectiveCapabilities(statusText);
  if (caps === null) return { ok: false, why: 'cannot read the process capabilities' };
  const missing: string[] = [];
  const need: Array<[number, string]> = [
    [CAP_NET_ADMIN, 'CAP_NET_ADMIN'],
    [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN'],
    [CAP_SETUID, 'CAP_SETUID'],
    [CAP_SETGID, 'CAP_SETGID'],
  ];
  for (const [bit, name] of need) if ((caps & (1n << BigInt(bit))) === 0n) missing.push(name);
  return missing.length === 0 ? { ok: true } : { ok: false, why: `not root (missing ${missing.join(', ')})` };
}

export function currentFenceCapability(): FenceCapability {
  try {
    return fenceCapability(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    return { ok: false, why: 'cannot read /proc/self/status' };
  }
}
