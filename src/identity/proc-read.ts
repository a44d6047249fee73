// Small procfs files in three system calls (open, read, close) where readFileSync makes five or
// more (it also asks for the size, which procfs does not know, and reads again to see the end).
// procfs hands over a stat, status, children or cmdline file in one read when the buffer is large
// enough, so a read that does not fill the buffer is the whole file.
import { closeSync, openSync, readSync } from 'node:fs';

const buffer = Buffer.allocUnsafe(16 * 1024);

/** The text of a procfs file; throws the fs error (ENOENT when the process is gone). */
export function readProcText(path: string, encoding: 'latin1' | 'utf8'): string {
  const fd = openSync(path, 'r');
  try {
    const first = readSync(fd, buffer, 0, buffer.length, null);
    if (first < buffer.length) return buffer.toString(encoding, 0, first);
    // Longer than the buffer (a long command line): read on to the end.
    const chunks = [Buffer.from(buffer.subarray(0, first))];
    for (let n = readSync(fd, buffer, 0, buffer.length, null); n > 0; n = readSync(fd, buffer, 0, buffer.length, null)) {
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString(encoding);
  } finally {
    closeSync(fd);
  }
}
