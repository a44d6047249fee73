// Where portcullis keeps what it can rebuild: $XDG_CACHE_HOME/portcullis, else ~/.cache/portcullis.
import { homedir } from 'node:os';
import { join } from 'node:path';

export function portcullisCacheDir(...parts: string[]): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'portcullis', ...parts);
}
