// The audit event: one JSON object per line. Pure.
import type { Decision } from '../policy/types.js';

export type AuditKind = 'connect' | 'http' | 'sni' | 'dns' | 'flow' | 'reload' | 'tunnel' | 'error' | 'audit_gap' | 'credential_misuse';

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

export function auditLine(event: AuditEvent): string {
  return `${JSON.stringify({ time: event.time ?? new Date().toISOString(), ...event })}\n`;
}
