// The sandbox's network: a namespace `pcrun-<pid>-<n>`, a veth pair with point-to-point
// addresses of its own (198.19.0.0/16, fd70:6363:2::/48), default routes towards the root
// namespace, and /etc/netns/<ns>/resolv.conf naming the DNS proxy (bound over /etc/resolv.conf
// in CMD's mount namespace). Few forks: two `ip -batch` runs, one per side of the veth pair.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { runCommand } from '../netns/command.js';
import { allocateLinkAddresses, interfaceName, type LinkAddresses } from '../netns/links.js';
import { cleanupStaleNamespaces, namespaceName, nextCounter } from '../netns/namespaces.js';
import { isProcessAlive, killQuietly, namespacePids } from '../netns/processes.js';
import { execFileSync } from 'node:child_process';

export const SANDBOX_NAMESPACE_PREFIX = 'pcrun-';
const NETNS_ETC = '/etc/netns';

export interface SandboxNetwork {
  netns: string;
  hostInterface: string;
  nsInterface: string;
  link: LinkAddresses;
  /** The resolv.conf naming the DNS proxy (/etc/netns/<ns>/resolv.conf). */
  resolvConf: string;
  /**
   * Removes the veth pair only, the slow part of tear-down (the kernel waits for RCU grace
   * periods): it can run while the namespace's nft counters are still being read.
   */
  deleteLink(): Promise<void>;
  /** Kills what is left in the namespace and removes it, the veth pair and its files. */
  close(): Promise<void>;
  /** The same, synchronously (process 'exit' handler). */
  closeSync(): void;
}

/** resolv.conf text for the sandbox: only the DNS proxy. Pure. */
export function resolvConf(dnsAddress: string): string {
  return `# portcullis sandbox: every lookup goes to the DNS proxy\nnameserver ${dnsAddress}\noptions timeout:2 attempts:2\n`;
}

/** Removes leftovers of killed runs: namespaces and /etc/netns directories of dead pids. */
export async function cleanupStaleSandboxes(): Promise<string[]> {
  const removed = await cleanupStaleNamespaces(SANDBOX_NAMESPACE_PREFIX);
  if (existsSync(NETNS_ETC)) {
    const pattern = new RegExp(`^${SANDBOX_NAMESPACE_PREFIX}(\\d+)-\\d+$`);
    for (const entry of readdirSync(NETNS_ETC)) {
      const match = pattern.exec(entry);
      if (!match || Number(match[1]) === process.pid || isProcessAlive(Number(match[1]))) continue;
      rmSync(`${NETNS_ETC}/${entry}`, { recursive: true, force: true });
    }
  }
  return removed;
}

export async function createSandboxNetwork(): Promise<SandboxNetwork> {
  await cleanupStaleSandboxes();
  const n = nextCounter();
  const netns = namespaceName(SANDBOX_NAMESPACE_PREFIX, n);
  const hostInterface = interfaceName('pcr', n, 'h');
  const nsInterface = interfaceName('pcr', n, 'n');
  const link = await allocateLinkAddresses('sandbox', n);

  const closeSync = (): void => {
    for (const pid of namespacePids(netns)) killQuietly(pid);
    try {
      execFileSync('ip', ['-force', '-batch', '-'], { input: `link del ${hostInterface}\nnetns del ${netns}\n`, stdio: ['pipe', 'ignore', 'ignore'] });
    } catch {
      // -force carries on past what is already gone; a failure here has nothing left to do
    }
    rmSync(`${NETNS_ETC}/${netns}`, { recursive: true, force: true });
  };
  const deleteLink = async (): Promise<void> => void (await runCommand('ip', ['link', 'del', hostInterface]));
  const close = async (): Promise<void> => {
    for (const pid of namespacePids(netns)) killQuietly(pid);
    // -force carries on past a link deleteLink() has already removed.
    await runCommand('ip', ['-force', '-batch', '-'], `link del ${hostInterface}\nnetns del ${netns}\n`).catch(() => undefined);
    rmSync(`${NETNS_ETC}/${netns}`, { recursive: true, force: true });
  };

  try {
    mkdirSync(`${NETNS_ETC}/${netns}`, { recursive: true, mode: 0o755 });
    writeFileSync(`${NETNS_ETC}/${netns}/resolv.conf`, resolvConf(link.hostV4), { mode: 0o644 });
    await runCommand('ip', ['-batch', '-'], [
      `netns add ${netns}`,
      `link add ${hostInterface} type veth peer name ${nsInterface} netns ${netns}`,
      `link set ${hostInterface} up`,
      `addr add ${link.hostV4}/${link.v4PrefixLength} dev ${hostInterface}`,
      `addr add ${link.hostV6}/${link.v6PrefixLength} dev ${hostInterface} nodad`,
      '',
    ].join('\n'));
    await runCommand('ip', ['-n', netns, '-batch', '-'], [
      'link set lo up',
      `link set ${nsInterface} up`,
      `addr add ${link.nsV4}/${link.v4PrefixLength} dev ${nsInterface}`,
      `addr add ${link.nsV6}/${link.v6PrefixLength} dev ${nsInterface} nodad`,
      `route add default via ${link.hostV4}`,
      `route add default via ${link.hostV6}`,
      '',
    ].join('\n'));
    // Per-interface IPv4 forwarding: packets the fence allows directly may leave through the
    // root namespace, without turning forwarding on for the whole machine.
    writeFileSync(`/proc/sys/net/ipv4/conf/${hostInterface}/forwarding`, '1');
  } catch (err) {
    await close();
    throw err;
  }
  return { netns, hostInterface, nsInterface, link, resolvConf: `${NETNS_ETC}/${netns}/resolv.conf`, deleteLink, close, closeSync };
}
