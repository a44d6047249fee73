// The audit event: one JSON object per line. Pure.
import type { Decision } from '../policy/types.js';

export type AuditKind = 'connect' | 'http' | 'sni' | 'socks' | 'dns' | 'flow' | 'reload' | 'tunnel' | 'error' | 'audit_gap' | 'credential_misuse';

export interface AuditEvent extends Partial<Decision> {
  time?: string;
  kind: AuditKind;
  host?: string | null;
  port?: number | null;
  binary?: string | null;
  pid?: number | null;
  ancestors?: string[];
  unresolved_reason?: string;
  /** The address the proxy connected to. */
  dialed?: string;
  [field: string]: unknown;
}

// The time of the last line, kept for the lines written in the same millisecond.
let stampedMs = -1;
let stampedText = '';

function now(): string {
  const ms = Date.now();
  if (ms !== stampedMs) {
    stampedMs = ms;
    stampedText = new Date(ms).toISOString();
  }
  return stampedText;
}

/**
 * The event's line, `time` first. Serialised as it stands: copying it into a new object first
 * (to put `time` in front) cost more than the serialising itself, most of all for events that
 * had a field deleted.
 */
export function auditLine(event: AuditEvent): string {
  if (event.time !== undefined) return `${JSON.stringify({ time: event.time, ...event })}\n`;
  const body = JSON.stringify(event);
  return body.length > 2 ? `{"time":"${now()}",${body.slice(1)}\n` : `{"time":"${now()}"}\n`;
}
