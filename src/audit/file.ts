// The audit file: opened append-only, created 0600 (the log names who connected where: no one
// but its owner reads it unless the operator says so), never through a symbolic link. It is
// reopened when its path no longer names the open file (moved or removed by log rotation; checked
// before every batch, one lstat) and when asked (SIGUSR1, logrotate's postrotate).
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { close, fstat, ftruncate, lstat, open, write } from 'node:fs';
import { promisify } from 'node:util';
import { AuditWriteError, type AuditTarget } from './target.js';

/** The mode a new audit file gets; an existing file keeps its own (e.g. logrotate's `create`). */
export const AUDIT_FILE_MODE = 0o600;

// O_NONBLOCK: opening a FIFO without a reader fails at once instead of hanging (no effect on files).
const OPEN_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const openAsync = promisify(open);
const writeAsync = promisify(write);
const fstatAsync = promisify(fstat);
const lstatAsync = promisify(lstat);
const ftruncateAsync = promisify(ftruncate);
const closeAsync = promisify(close);

/** The audit file cannot be used: the operator's error, said at start. */
export class AuditFileError extends Error {}

interface FileIdentity {
  dev: number;
  ino: number;
}

function explainOpenError(path: string, err: NodeJS.ErrnoException): AuditFileError {
  if (err.code === 'ELOOP') return new AuditFileError(`audit file ${path} is a symbolic link: refusing to follow it (give the path of a regular file)`);
  return new AuditFileError(`cannot open audit file ${path}: ${err.code ?? err.message}`);
}

/** What makes an opened path unfit for the audit, or null. */
function unfitness(path: string, stats: { uid: number; isFile(): boolean }): string | null {
  if (!stats.isFile()) return `audit file ${path} is not a regular file`;
  const uid = process.geteuid?.() ?? stats.uid;
  // Someone else's file (made in a shared directory beforehand) could be read or truncated by them.
  if (stats.uid !== uid && stats.uid !== 0) return `audit file ${path} belongs to uid ${stats.uid}, not to this user (${uid}) or root`;
  return null;
}

export class AuditFile implements AuditTarget {
  private fd: number;
  private identity: FileIdentity;
  private reopenAsked = false;
  // A line cut by a failed write that could not be truncated away: end it before writing more.
  private cutLine = false;

  /** Opens `path` at once: a bad path is an AuditFileError for the operator at start. */
  constructor(readonly path: string) {
    let fd: number;
    try {
      fd = openSync(path, OPEN_FLAGS, AUDIT_FILE_MODE);
    } catch (err) {
      throw explainOpenError(path, err as NodeJS.ErrnoException);
    }
    const stats = fstatSync(fd);
    const why = unfitness(path, stats);
    if (why) {
      closeSync(fd);
      throw new AuditFileError(why);
    }
    this.fd = fd;
    this.identity = { dev: stats.dev, ino: stats.ino };
  }

  /** The next write goes to a file opened afresh at the path. */
  requestReopen(): void {
    this.reopenAsked = true;
  }

  async write(data: Buffer): Promise<void> {
    try {
      await this.followPath();
    } catch (err) {
      throw new AuditWriteError(err as NodeJS.ErrnoException, 0);
    }
    if (this.cutLine) {
      await this.writeFully(Buffer.from('\n'));
      this.cutLine = false;
    }
    await this.writeFully(data);
  }

  async close(): Promise<void> {
    await closeAsync(this.fd);
  }

  /** Reopens when asked, or when the path names another file or none. */
  private async followPath(): Promise<void> {
    if (!this.reopenAsked) {
      const now = await lstatAsync(this.path).catch(() => null);
      if (now && now.dev === this.identity.dev && now.ino === this.identity.ino) return;
    }
    const fd = await openAsync(this.path, OPEN_FLAGS, AUDIT_FILE_MODE).catch((err: NodeJS.ErrnoException) => {
      throw Object.assign(explainOpenError(this.path, err), { code: err.code });
    });
    const stats = await fstatAsync(fd);
    const why = unfitness(this.path, stats);
    if (why) {
      await closeAsync(fd);
      throw Object.assign(new AuditFileError(why), { code: 'EUNFIT' });
    }
    const old = this.fd;
    this.fd = fd;
    this.identity = { dev: stats.dev, ino: stats.ino };
    this.reopenAsked = false;
    this.cutLine = false;
    await closeAsync(old).catch(() => undefined);
  }

  /**
   * Writes all of `data` (whole lines), each write() call starting at a line: other processes
   * (proxy workers) append to the same file, and O_APPEND keeps one call's bytes together, but a
   * call that went on from the middle of a line could land after another process's lines. So a
   * write that stops inside a line (disk full) has that fragment cut back, and the next call
   * starts again at the line. A failure leaves the file cut back to the last whole line written,
   * so it only ever holds whole lines; the error says how much of `data` was kept.
   */
  private async writeFully(data: Buffer): Promise<void> {
    let kept = 0;
    let stalled = 0;
    while (kept < data.length) {
      let written: number;
      try {
        written = (await writeAsync(this.fd, data, kept, data.length - kept, null)).bytesWritten;
      } catch (err) {
        throw new AuditWriteError(err as NodeJS.ErrnoException, kept);
      }
      const end = kept + written;
      const lineEnd = end === data.length ? end : Math.max(kept, data.lastIndexOf(0x0a, end - 1) + 1);
      if (end > lineEnd) await this.dropFragment(data, lineEnd, end);
      // No whole line went in twice in a row, yet no error: give up for now rather than spin.
      stalled = lineEnd === kept ? stalled + 1 : 0;
      if (stalled >= 2) throw new AuditWriteError(Object.assign(new Error('the audit file takes no whole line (short writes)'), { code: 'EIO' }), kept);
      kept = lineEnd;
    }
  }

  /**
   * A write stopped at `end`, inside the line that starts at `lineStart`. Why is found out by
   * writing the rest of that line (on a full disk it fails at once, writing nothing); then the
   * fragment, and whatever that probe wrote, is cut back. Throws the probe's error.
   */
  private async dropFragment(data: Buffer, lineStart: number, end: number): Promise<void> {
    const lineStop = data.indexOf(0x0a, end) + 1 || data.length;
    let probed = 0;
    let failure: NodeJS.ErrnoException | null = null;
    try {
      probed = (await writeAsync(this.fd, data, end, lineStop - end, null)).bytesWritten;
    } catch (err) {
      failure = err as NodeJS.ErrnoException;
    }
    const cut = await this.cutBack(end - lineStart + probed);
    if (failure) throw new AuditWriteError(failure, lineStart);
    // A fragment that stays (the cut failed) is ended at the next write(), not followed here.
    if (!cut) throw new AuditWriteError(Object.assign(new Error('a short write could not be cut back'), { code: 'EIO' }), lineStart);
  }

  /**
   * Removes the last `bytes` bytes: the fragment this process has just written at the end.
   * (Another process's lines could follow it only if space was freed in the instant between its
   * write and this cut, on a disk that had just been full: not guarded against.) When the cut
   * fails, the fragment is ended by a newline before the next write (cutLine).
   */
  private async cutBack(bytes: number): Promise<boolean> {
    try {
      const { size } = await fstatAsync(this.fd);
      await ftruncateAsync(this.fd, size - bytes);
      return true;
    } catch {
      this.cutLine = true;
      return false;
    }
  }
}
