// The trust bundle a sandbox is given: the system's roots plus the inspection CA, so its
// programs trust both the real internet (through passthrough tunnels) and inspected leaves.
import { rename, writeFile } from 'node:fs/promises';
import { uniquePems } from './roots.js';

/** The bundle's text: the CA first (easy to find), then the roots. Pure. */
export function trustBundleText(caPem: string, roots: readonly string[]): string {
  return `${uniquePems([caPem, ...roots]).join('\n')}\n`;
}

/** Writes the bundle to `file` (0644) through a temporary file, so a reader never sees half of it. */
export async function writeTrustBundle(file: string, caPem: string, roots: readonly string[]): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, trustBundleText(caPem, roots), { mode: 0o644 });
  await rename(temporary, file);
}
