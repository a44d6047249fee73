// Named network namespaces (`ip netns`), shared by the simulated internet and `portcullis run`.
// Names carry a fixed prefix and the creating process's pid, so a later run can find and
// remove what a killed run left behind.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { runCommand, type CommandResult } from './command.js';
import { isProcessAlive, killAll, namespacePids } from './processes.js';

let counter = 0;

/** A per-process counter: names stay unique inside one process and across processes (pid). */
export function nextCounter(): number {
  return counter++;
}

/** `<prefix><pid>-<n>`: the form cleanupStaleNamespaces() recognises. */
export function namespaceName(prefix: string, n = nextCounter()): string {
  return `${prefix}${process.pid}-${n}`;
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

/** Runs a command inside the namespace and returns its output. */
export async function runIn(ns: string, cmd: string, args: string[] = [], input?: string): Promise<CommandResult> {
  return runCommand('ip', ['netns', 'exec', ns, cmd, ...args], input);
}
