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

// Shell functions of the init. A mount target that is a symlink (/var/run → /run) is followed,
// and a directory gets one tmpfs however many names lead to it. HOME and the bind targets that
// do not exist yet (e.g. /etc/resolv.conf → /run/…) are created only inside those tmpfs, never on
// the host's file system; an optional bind (a system CA bundle) is skipped where its target is no file.
const FUNCTIONS = `private=
tmpfs() {
  d=$1
  [ -L "$d" ] && d=$(readlink -f "$d")
  [ -d "$d" ] || return 0
  case " $private " in *" $d "*) return 0 ;; esac
  mount -t tmpfs -o "nosuid,nodev,mode=$2" portcullis "$d"
  private="$private $d"
}
inside_private() {
  for d in $private; do case "$1" in "$d"/*) return 0 ;; esac; done
  return 1
}
home() {
  p=\${1%/*}
  [ -L "$p" ] && p=$(readlink -f "$p")
  if ! inside_private "$p/\${1##*/}"; then echo "portcullis run: HOME $1 would not be in a private tmpfs" >&2; return 1; fi
  install -d -m 700 -o "$2" -g "$3" "$1"
}
bind() {
  t=$2
  [ -L "$t" ] && t=$(readlink -m "$t")
  if [ ! -e "$t" ]; then
    if ! inside_private "$t"; then echo "portcullis run: cannot bind $1 over $2: $t does not exist" >&2; return 1; fi
    mkdir -p "\${t%/*}" && : > "$t"
  fi
  mount --bind "$1" "$t"
}
bind_if_present() {
  t=$2
  [ -L "$t" ] && t=$(readlink -m "$t")
  [ -f "$t" ] || return 0
  mount --bind "$1" "$t"
}`;

export function initScript(mounts: SandboxMounts): string {
  const lines = ['set -e', FUNCTIONS];
  for (const m of mounts.tmpfs) lines.push(`tmpfs ${shellQuote(m.target)} ${m.mode}`);
  lines.push(`home ${shellQuote(mounts.home.path)} ${mounts.home.uid} ${mounts.home.gid}`);
  for (const b of mounts.binds) lines.push(`${b.ifPresent ? 'bind_if_present' : 'bind'} ${shellQuote(b.source)} ${shellQuote(b.target)}`);
  // CMD in the foreground: a background command would start with SIGINT and SIGQUIT ignored
  // (and with stdin from /dev/null). While it waits, the shell also reaps adopted orphans.
  lines.push('set +e', '"$@"', 'exit $?');
  return `${lines.join('\n')}\n`;
}
