// Watches a policy file for changes (editors often replace the file by rename, so the
// directory is watched and events are filtered by name), debounced.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export function watchPolicyFile(file: string, onChange: () => void, debounceMs = 150): { close(): void } {
  const name = basename(file);
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed.toString() !== name) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, debounceMs);
    });
    watcher.on('error', () => undefined);
  } catch {
    // No watch support: SIGHUP still reloads.
  }
  return {
    close() {
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
