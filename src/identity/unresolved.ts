// Failures of identity resolution, each with the reason code the audit event records.
import type { UnresolvedReason } from './types.js';

export class UnresolvedError extends Error {
  constructor(
    readonly reason: UnresolvedReason,
    message: string,
  ) {
    super(message);
    this.name = 'UnresolvedError';
  }
}

export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/**
 * Turns a procfs error into an UnresolvedError: a vanished /proc/<pid> means the process
 * exited; EACCES/EPERM means we lack the right to look. Anything else keeps `fallback`.
 */
export function unresolvedFromFsError(err: unknown, fallback: UnresolvedReason, what: string): UnresolvedError {
  if (err instanceof UnresolvedError) return err;
  const code = errnoOf(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ENOENT' || code === 'ESRCH') return new UnresolvedError('process_gone', `${what}: ${detail}`);
  if (code === 'EACCES' || code === 'EPERM') return new UnresolvedError('permission', `${what}: ${detail}`);
  return new UnresolvedError(fallback, `${what}: ${detail}`);
}
