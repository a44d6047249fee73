// Small helpers around `ip netns` and veth pairs, shared by the simulated internet and
// `portcullis run`. Names carry a fixed prefix and the creating process's pid, so a later run
// can find and remove what a killed run left behind.
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
let counter = 0;

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs a command; a non-zero exit throws an Error naming the command and its stderr. */
export async function runCommand(cmd: string, args: string[], input?: string): Promise<CommandResult> {
  try {
    if (input !== undefined) return await runWithInput(cmd, args, input);
    const { stdout, stderr } = await execFileAsync(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

function runWithInput(cmd: string, args: string[], input: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A per-process counter: names stay unique inside one process and across processes (pid). */
export function nextCounter(): number {
  return counter++;
}

/** `<prefix><pid>-<n>`: the form cleanupStaleNamespaces() recognises. */
export function namespaceName(prefix: string, n = nextCounter()): string {
  return `${prefix}${process.pid}-${n}`;
}

/** An interface name ≤ 15 characters: tag (≤ 4 chars), pid and counter in base 36, side. */
export function interfaceName(tag: string, n: number, side: 'h' | 'n'): string {
  const name = `${tag}${process.pid.toString(36)}${n.toString(36)}${side}`;
  if (name.length > 15) throw new Error(`interface name too long: ${name}`);
  return name;
}

/** Named namespaces: the files `ip netns add` creates in /run/netns (read without a fork). */
export async function listNamespaces(): Promise<string[]> {
  try {
    return readdirSync('/run/netns').sort();
  } catch {
    return [];
  }
}

/** Creates `<prefix><pid>-<n>` with its loopback up, after removing stale ones of `prefix`. */
export async function createNamespace(prefix: string, n = nextCounter()): Promise<string> {
  await cleanupStaleNamespaces(prefix);
  const name = namespaceName(prefix, n);
  await runCommand('ip', ['netns', 'add', name]);
  try {
    await runCommand('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    await deleteNamespace(name);
    throw err;
  }
  return name;
}

/**
 * Pids of the processes inside a named namespace, found in-process (what `ip netns pids`
 * does, without a fork): their /proc/<pid>/ns/net names the namespace file's inode.
 */
export function namespacePids(name: string): number[] {
  let inode: number;
  try {
    inode = statSync(`/run/netns/${name}`).ino;
  } catch {
    return [];
  }
  const wanted = `net:[${inode}]`;
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === wanted) out.push(Number(entry));
    } catch {
      // exited, or a kernel thread
    }
  }
  return out;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Kills every process left in the namespace, then deletes it (its veth ends, and the routes
 * through their peers, go with it) and its /etc/netns directory. Missing is not an error.
 */
export async function deleteNamespace(name: string): Promise<void> {
  killAll(namespacePids(name));
  try {
    await runCommand('ip', ['netns', 'del', name]);
  } catch (err) {
    if (!/No such file|not found|Invalid/i.test((err as Error).message)) throw err;
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** The same, synchronously: for process 'exit' handlers, where nothing async runs. */
export function deleteNamespaceSync(name: string): void {
  killAll(namespacePids(name));
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** Removes namespaces `<prefix><pid>-<n>` whose creating process is dead. Returns their names. */
export async function cleanupStaleNamespaces(prefix: string): Promise<string[]> {
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')}(\\d+)-\\d+$`);
  const removed: string[] = [];
  for (const name of await listNamespaces()) {
    const match = pattern.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || isProcessAlive(pid)) continue;
    await deleteNamespace(name);
    removed.push(name);
  }
  return removed;
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

/** Runs a command inside the namespace and returns its output. */
export async function runIn(ns: string, cmd: string, args: string[] = [], input?: string): Promise<CommandResult> {
  return runCommand('ip', ['netns', 'exec', ns, cmd, ...args], input);
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
