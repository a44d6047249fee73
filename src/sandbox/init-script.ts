// The first process of the sandbox's PID namespace (pid 1 there), a shell script run as root
// inside CMD's new mount namespace: it makes the mounts, runs the held CMD with the standard
// streams and the launch pipes, and exits with CMD's status (128+n for signal n). Its exit is what ends the
// run: the kernel then kills every process left in the namespace, fork loops included, before
// anything is removed. As pid 1 it gets no signal it has no handler for; signals go to CMD.
// Pure.
import type { SandboxMounts } from './mounts.js';

/** Quotes one word for sh. Pure. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

// A bind target inside a private tmpfs may not exist yet (e.g. /etc/resolv.conf → /run/…):
// created there, never on the host's file system.
const BIND_FUNCTION = `bind() {
  t=$2
  [ -L "$t" ] && t=$(readlink -m "$t")
  if [ ! -e "$t" ]; then
    case "$t" in
      /run/*|/var/run/*|/tmp/*|/dev/shm/*) mkdir -p "\${t%/*}" && : > "$t" ;;
      *) echo "portcullis run: cannot bind $1 over $2: $t does not exist" >&2; return 1 ;;
    esac
  fi
  mount --bind "$1" "$t"
}`;

export function initScript(mounts: SandboxMounts): string {
  const lines = ['set -e'];
  for (const m of mounts.tmpfs) {
    const t = shellQuote(m.target);
    lines.push(`if [ -d ${t} ] && [ ! -L ${t} ]; then mount -t tmpfs -o nosuid,nodev,mode=${m.mode} portcullis ${t}; fi`);
  }
  const home = shellQuote(mounts.home.path);
  lines.push(`install -d -m 700 -o ${mounts.home.uid} -g ${mounts.home.gid} ${home}`);
  lines.push(BIND_FUNCTION);
  for (const b of mounts.binds) lines.push(`bind ${shellQuote(b.source)} ${shellQuote(b.target)}`);
  // CMD in the foreground: a background command would start with SIGINT and SIGQUIT ignored
  // (and with stdin from /dev/null). While it waits, the shell also reaps adopted orphans.
  lines.push('set +e', '"$@"', 'exit $?');
  return `${lines.join('\n')}\n`;
}
