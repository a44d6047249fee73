// The upstream proxy's credentials file: `user:password` on one line, readable by its owner
// only (a file others can read is refused, as ssh refuses such a key). The password stays in
// memory as the Proxy-Authorization value; no message quotes the file's content.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { parseUpstreamProxyCredentials } from './upstream-proxy.js';

export class UpstreamProxyAuthError extends Error {
  override name = 'UpstreamProxyAuthError';
}

/** The `Proxy-Authorization` value the file's credentials make; throws UpstreamProxyAuthError. */
export function readUpstreamProxyAuthFile(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new UpstreamProxyAuthError(`cannot open the upstream proxy credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    // The opened file's own mode: a rename between a check and the read cannot swap it.
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new UpstreamProxyAuthError(`the upstream proxy credentials file ${file} is not a regular file`);
    if ((stats.mode & 0o044) !== 0) {
      throw new UpstreamProxyAuthError(`the upstream proxy credentials file ${file} is readable by others (mode ${(stats.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    const parsed = parseUpstreamProxyCredentials(readFileSync(fd, 'utf8'));
    if (!parsed.ok) throw new UpstreamProxyAuthError(`${file}: ${parsed.message}`);
    return parsed.authorization;
  } finally {
    closeSync(fd);
  }
}
