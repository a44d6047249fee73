// `proxy --placeholders FILE` (and `decider --placeholders FILE`): the placeholders of this proxy start, as `VARIABLE=placeholder`
// lines, for a sandbox runtime to put in its sandbox's environment. Created 0600 (written
// through a new file renamed into place, never through a symlink). At start a failure exits 2;
// after a reload (a credential may have been added) it is reported and the service goes on.
import { closeSync, openSync, renameSync, rmSync, writeSync, constants } from 'node:fs';
import type { CredentialStore } from '../credentials/store.js';

export function writePlaceholderFile(file: string, credentials: CredentialStore, fatal = true): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, credentials.placeholderFile());
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (err) {
    process.stderr.write(`portcullis: cannot write the placeholder file ${file}: ${(err as Error).message}\n`);
    rmSync(temporary, { force: true });
    if (fatal) process.exit(2);
  }
}
