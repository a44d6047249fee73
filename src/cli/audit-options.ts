// The audit options of `proxy` and `run`: `--audit-failure closed|open`, opening the file with a
// clear error, and telling the operator on stderr when writing fails and when it works again.
import { InvalidArgumentError } from 'commander';
import { AuditFileError } from '../audit/file.js';
import { openAuditSink, type AuditFailureMode, type AuditHealth, type StreamAuditSink } from '../audit/sink.js';

export const AUDIT_FAILURE_HELP =
  'while audit events cannot be written (disk full, file unreachable): closed = refuse new connections with 503 audit_unavailable (default), open = keep serving; either way the lost events are counted in an audit_gap event';

export function parseAuditFailure(text: string): AuditFailureMode {
  if (text !== 'closed' && text !== 'open') throw new InvalidArgumentError(`"${text}" must be closed or open`);
  return text;
}

/** The sink for `--audit`; a path that cannot be the audit file ends the process (exit 2). */
export function openAuditSinkOrExit(target: string | undefined, command: string, options: { sharedStdout?: boolean } = {}): StreamAuditSink {
  try {
    return openAuditSink(target, options);
  } catch (err) {
    if (!(err instanceof AuditFileError)) throw err;
    process.stderr.write(`portcullis ${command}: ${err.message}\n`);
    process.exit(2);
  }
}

function describe(health: AuditHealth, mode: AuditFailureMode): string {
  if (!health.healthy) {
    const consequence = mode === 'closed' ? 'new connections are refused (503 audit_unavailable) until it can' : 'connections are still served (--audit-failure open), their events are lost';
    return `the audit cannot be written (${health.cause}: ${health.detail}); ${consequence}`;
  }
  const seconds = ((Date.now() - (health.since?.getTime() ?? Date.now())) / 1000).toFixed(1);
  return `the audit is written again after ${seconds} s; ${health.lost ?? 0} event(s) lost, recorded in an audit_gap event`;
}

/** Says on stderr when writing fails and when it works again. */
export function reportAuditHealth(sink: StreamAuditSink, command: string, mode: AuditFailureMode): void {
  sink.onHealthChange((health) => process.stderr.write(`portcullis ${command}: ${describe(health, mode)}\n`));
}

/** At shutdown: what could not be written, if anything. */
export function reportUnwritten(sink: StreamAuditSink, command: string): void {
  const health = sink.health();
  if (!health.healthy) process.stderr.write(`portcullis ${command}: exiting with the audit still failing (${health.cause}); ${health.lost ?? 0} event(s) lost since ${health.since?.toISOString()}\n`);
}
