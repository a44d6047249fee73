// Starts CMD as the sandbox user, without capabilities, held before exec until release(): its
// pid is known first (the anchor the proxy resolves identities through), and nothing runs
// before the fence is in place. Isolated (root), the chain is
//
//   ip netns exec NS                          network namespace (and /etc/netns/NS files)
//   unshare --pid --mount --ipc --mount-proc --fork --kill-child
//   sh -c INIT                                pid 1: mounts, then CMD (init-script.ts)
//   setpriv --reuid U --regid G --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs
//   sh -c 'say "ready" on fd 4; wait for "go" on fd 3; exec CMD'
//
// `ip netns exec` execs; unshare forks the init and waits for it; setpriv and sh exec, so CMD's
// host pid is the held shell's from start to end.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { childPids, killQuietly } from '../netns/processes.js';
import { initScript } from './init-script.js';
import type { SandboxMounts } from './mounts.js';
import type { SandboxUser } from './user.js';

/** Says it is ready on fd 4, reads one line from fd 3, then becomes CMD. Anything but "go" aborts. */
const HOLD_SCRIPT = 'echo ready >&4; exec 4>&-; IFS= read -r go <&3 || exit 125; exec 3<&-; [ "$go" = go ] || exit 125; exec "$@"';
export const ABORTED_EXIT = 125;

export interface Isolation {
  netns: string;
  user: SandboxUser;
  mounts: SandboxMounts;
}

export interface LaunchOptions {
  /** Namespaces and the unprivileged user; absent: run here, as the caller (no fence). */
  isolation?: Isolation;
  command: string[];
  env: Record<string, string>;
  cwd?: string;
}

/** The argv that starts the held command. Pure. */
export function launchArgv(opts: Pick<LaunchOptions, 'isolation' | 'command'>): string[] {
  const hold = ['/bin/sh', '-c', HOLD_SCRIPT, 'portcullis-run', ...opts.command];
  const iso = opts.isolation;
  if (iso === undefined) return hold;
  return [
    'ip', 'netns', 'exec', iso.netns,
    'unshare', '--pid', '--mount', '--ipc', '--propagation', 'private', '--mount-proc', '--fork', '--kill-child',
    '/bin/sh', '-c', initScript(iso.mounts), 'portcullis-init',
    'setpriv', `--reuid=${iso.user.uid}`, `--regid=${iso.user.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
    ...hold,
  ];
}

export interface HeldCommand {
  child: ChildProcess;
  /** The launched process: CMD's ancestor (isolated) or CMD itself; its tree is the run's. */
  pid: number;
  /** CMD's host pid, once it waits for release (rejects when the chain failed to start). */
  ready: Promise<number>;
  /** Lets CMD start. */
  release(): void;
  /** Ends the held command without starting CMD (it exits 125). */
  abort(): void;
  /** Passes a signal to CMD; before CMD exists, ends everything. */
  signal(signal: NodeJS.Signals): void;
  /** Kills every process of the run at once (the PID namespace's init), or CMD when not isolated. */
  kill(): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function launchHeld(opts: LaunchOptions): HeldCommand {
  const [file, ...args] = launchArgv(opts);
  const child = spawn(file!, args, {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe', 'pipe'],
    env: opts.env,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  });
  // Once the launched process has ended, so has every process of the run (the init waited for
  // CMD; a killed unshare takes the init with it): its pids are nobody's to signal any more.
  let ended = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: 127, signal: null }));
  }).finally(() => (ended = true));
  if (child.pid === undefined) throw new Error(`cannot start ${file}`);
  const outer = child.pid;
  const isolated = opts.isolation !== undefined;
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => undefined); // CMD may be gone already
  let cmdPid: number | undefined;
  let initPid: number | undefined;
  const ready = readyLine(child.stdio[4] as Readable, exited).then(() => {
    // The held shell said "ready": the init (isolated) and CMD exist and are each other's.
    initPid = isolated ? childPids(outer)[0] : undefined;
    cmdPid = isolated ? (initPid === undefined ? undefined : childPids(initPid)[0]) : outer;
    if (cmdPid === undefined) throw new Error('the sandbox started, but its command cannot be found');
    return cmdPid;
  });
  ready.catch(() => undefined);
  const kill = (): void => {
    if (ended) return;
    const init = isolated ? (initPid ?? childPids(outer)[0]) : undefined;
    // The init's death takes every process of its namespace with it; without one, --kill-child does.
    killQuietly(init ?? outer);
  };
  return {
    child,
    pid: outer,
    ready,
    release: () => gate.end('go\n'),
    abort: () => gate.end('stop\n'),
    signal: (signal) => {
      if (ended) return;
      if (cmdPid === undefined) kill();
      else killQuietly(cmdPid, signal);
    },
    kill,
    exited,
  };
}

/** Resolves on the "ready" line; rejects when the pipe closes without it. */
function readyLine(pipe: Readable, exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    pipe.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('ready\n')) {
        resolve();
        pipe.destroy();
      }
    });
    pipe.on('error', () => undefined);
    pipe.once('close', () => {
      if (text.includes('ready\n')) return;
      void exited.then(({ code, signal }) => reject(new Error(`the sandbox could not be set up (its init ended with ${signal ?? `exit code ${code}`})`)));
    });
  });
}
