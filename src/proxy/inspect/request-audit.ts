// The audit event of one inspected request: an `http` event with `tls: true`, the ALPN protocol,
// method, path (query removed: it may carry secrets), status, body bytes each way, the decision
// and who asked. Emitted once, when the exchange is over.
import type { AuditEvent } from '../../audit/events.js';
import { callerFields } from '../caller.js';
import type { InspectedConnection } from './connection.js';
import type { RequestVerdict } from './decide.js';

export interface RequestRecord {
  status: number;
  bytesUp: number;
  bytesDown: number;
  /** Why the request failed (refused, or the upstream failed). */
  error?: string;
  errorDetail?: string;
  /** OpenSSL's code for an upstream TLS failure. */
  tlsCode?: string;
  /** The request went upstream on a pooled connection (kept from an earlier exchange). */
  reused?: boolean;
}

/** Starts the record of a request; `done` emits its event (once). */
export function recordRequest(conn: InspectedConnection, verdict: RequestVerdict): { record: RequestRecord; done(): void } {
  const record: RequestRecord = { status: 0, bytesUp: 0, bytesDown: 0 };
  let emitted = false;
  const done = (): void => {
    if (emitted) return;
    emitted = true;
    conn.p.emit(requestEvent(conn, verdict, record));
  };
  return { record, done };
}

function requestEvent(conn: InspectedConnection, verdict: RequestVerdict, record: RequestRecord): AuditEvent {
  const { facts } = verdict;
  const decision = verdict.decision ?? { allow: false, decision: 'deny' as const, reason: verdict.ok ? '' : verdict.refusal.detail, policy: null };
  const event: AuditEvent = {
    kind: 'http',
    ...decision,
    host: facts.host,
    port: facts.port,
    method: facts.method,
    ...(facts.path !== undefined ? { path: facts.path.split('?')[0] } : {}),
    tls: true,
    alpn: conn.alpn,
    via: conn.tracked.kind,
    status: record.status,
    bytes_up: record.bytesUp,
    bytes_down: record.bytesDown,
    ...callerFields(conn.tracked.identity),
    client: conn.peer,
  };
  delete event.explicit_ips;
  delete event.inspect;
  if (conn.upstream.dialed !== '' && verdict.ok) event.dialed = conn.upstream.dialed;
  if (conn.upstream.upstreamProxy !== undefined && verdict.ok) event.upstream_proxy = conn.upstream.upstreamProxy;
  if (record.reused === true) event.upstream_reused = true;
  if (!verdict.ok) event.error = verdict.error;
  if (record.error !== undefined) event.error = record.error;
  if (record.errorDetail !== undefined) event.error_detail = record.errorDetail;
  if (record.tlsCode !== undefined) event.tls_error_code = record.tlsCode;
  return event;
}
