// CMD's way of ending, as the exit code of `portcullis run` (the shell's convention). Pure.
import { constants } from 'node:os';

export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal !== null) {
    const number = (constants.signals as Record<string, number | undefined>)[signal];
    return 128 + (number ?? 1);
  }
  return 1;
}
