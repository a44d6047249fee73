// veth pairs between the root namespace and a named one, and their point-to-point addresses.
import { execFileSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { runCommand } from './command.js';

/** An interface name ≤ 15 characters: tag (≤ 4 chars), pid and counter in base 36, side. */
export function interfaceName(tag: string, n: number, side: 'h' | 'n'): string {
  const name = `${tag}${process.pid.toString(36)}${n.toString(36)}${side}`;
  if (name.length > 15) throw new Error(`interface name too long: ${name}`);
  return name;
}

/**
 * Deletes a root-namespace link (a veth end takes its peer with it) at once: the kernel
 * tears a deleted namespace's devices down later, so routes through them would linger a while.
 */
export async function deleteLink(name: string): Promise<void> {
  try {
    await runCommand('ip', ['link', 'del', name]);
  } catch (err) {
    if (!/Cannot find device|does not exist/i.test((err as Error).message)) throw err;
  }
}

export function deleteLinkSync(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/** A veth pair: `hostIf` stays in the root namespace, `nsIf` moves into `ns`. Both are up. */
export async function createVethPair(hostIf: string, nsIf: string, ns: string): Promise<void> {
  await runCommand('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', ns]);
  await runCommand('ip', ['link', 'set', hostIf, 'up']);
  await runCommand('ip', ['-n', ns, 'link', 'set', nsIf, 'up']);
}

export interface LinkAddresses {
  hostV4: string;
  nsV4: string;
  /** Prefix length of the IPv4 pair (/31). */
  v4PrefixLength: number;
  hostV6: string;
  nsV6: string;
  v6PrefixLength: number;
}

/** Which block a link's addresses come from: one per kind of user, so they never overlap. */
export type LinkKind = 'sim' | 'sandbox';

const LINK_BLOCKS: Record<LinkKind, { v4: [number, number]; v6: string }> = {
  // 198.18.0.0/15 (benchmarking range): never a real destination, so never a clash with one.
  sim: { v4: [198, 18], v6: 'fd70:6363:1' },
  sandbox: { v4: [198, 19], v6: 'fd70:6363:2' },
};

/**
 * Point-to-point addresses for a veth pair (/31 and /64), derived from pid and counter and
 * checked against the addresses already present in the root namespace.
 */
export async function allocateLinkAddresses(kind: LinkKind, n: number): Promise<LinkAddresses> {
  const taken = new Set(
    Object.values(networkInterfaces())
      .flat()
      .map((a) => a?.address ?? ''),
  );
  const block = LINK_BLOCKS[kind];
  for (let probe = 0; probe < 32768; probe++) {
    const index = (process.pid * 16 + n + probe * 7919) % 32768;
    const high = Math.floor((index * 2) / 256);
    const low = (index * 2) % 256;
    const hostV4 = `${block.v4[0]}.${block.v4[1]}.${high}.${low}`;
    const hostV6 = `${block.v6}:${index.toString(16)}::1`;
    if (taken.has(hostV4) || taken.has(hostV6)) continue;
    return {
      hostV4,
      nsV4: `${block.v4[0]}.${block.v4[1]}.${high}.${low + 1}`,
      v4PrefixLength: 31,
      hostV6,
      nsV6: `${block.v6}:${index.toString(16)}::2`,
      v6PrefixLength: 64,
    };
  }
  throw new Error(`no free ${kind} link addresses left`);
}

/** Puts the link addresses on both ends (no duplicate address detection: usable at once). */
export async function addressLink(hostIf: string, nsIf: string, ns: string, link: LinkAddresses): Promise<void> {
  await runCommand('ip', ['addr', 'add', `${link.hostV4}/${link.v4PrefixLength}`, 'dev', hostIf]);
  await runCommand('ip', ['-6', 'addr', 'add', `${link.hostV6}/${link.v6PrefixLength}`, 'dev', hostIf, 'nodad']);
  await runCommand('ip', ['-n', ns, 'addr', 'add', `${link.nsV4}/${link.v4PrefixLength}`, 'dev', nsIf]);
  await runCommand('ip', ['-n', ns, '-6', 'addr', 'add', `${link.nsV6}/${link.v6PrefixLength}`, 'dev', nsIf, 'nodad']);
}
