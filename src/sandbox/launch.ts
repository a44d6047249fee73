// Starts CMD inside the sandbox namespace as the sandbox user, without capabilities, held
// before exec until release(): its pid is known first (the anchor the proxy resolves
// identities through), and nothing runs before the fence is in place.
//
//   ip netns exec NS  setpriv --reuid U --regid G --clear-groups --inh-caps=-all
//     --bounding-set=-all --no-new-privs  sh -c 'wait for "go" on fd 3; exec CMD'
//
// `ip netns exec`, setpriv and sh all exec, so the pid stays CMD's pid from start to end.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import type { SandboxUser } from './user.js';

/** Reads one line from fd 3, closes it, then becomes CMD. Anything but "go" aborts. */
const HOLD_SCRIPT = 'IFS= read -r go <&3 || exit 125; exec 3<&-; [ "$go" = go ] || exit 125; exec "$@"';
export const ABORTED_EXIT = 125;

export interface LaunchOptions {
  /** Network namespace; absent: run in this one (no fence). */
  netns?: string;
  /** Drop to this user with no capabilities; absent: keep the caller's identity. */
  user?: SandboxUser;
  command: string[];
  env: Record<string, string>;
  cwd?: string;
}

/** The argv that starts the held command. Pure. */
export function launchArgv(opts: Pick<LaunchOptions, 'netns' | 'user' | 'command'>): string[] {
  const argv: string[] = [];
  if (opts.netns !== undefined) argv.push('ip', 'netns', 'exec', opts.netns);
  if (opts.user !== undefined) {
    argv.push(
      'setpriv',
      `--reuid=${opts.user.uid}`,
      `--regid=${opts.user.gid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      '--',
    );
  }
  argv.push('/bin/sh', '-c', HOLD_SCRIPT, 'portcullis-run', ...opts.command);
  return argv;
}

export interface HeldCommand {
  child: ChildProcess;
  pid: number;
  /** Lets CMD start. */
  release(): void;
  /** Ends the held command without starting CMD (it exits 125). */
  abort(): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function launchHeld(opts: LaunchOptions): HeldCommand {
  const [file, ...args] = launchArgv(opts);
  const child = spawn(file!, args, {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    env: opts.env,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: 127, signal: null }));
  });
  if (child.pid === undefined) throw new Error(`cannot start ${file}`);
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => undefined); // CMD may be gone already
  return {
    child,
    pid: child.pid,
    release: () => gate.end('go\n'),
    abort: () => gate.end('stop\n'),
    exited,
  };
}
