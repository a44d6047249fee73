// The proxy's own HTTP answers: structured JSON denials (written for a human or an AI agent to
// read) and plain errors. Pure: each returns the bytes to write before closing.

export type ProxyErrorKind =
  | 'policy_denied'
  | 'ssrf_denied'
  | 'integrity_violation'
  | 'inspection_unavailable'
  | 'credential_not_bound'
  | 'body_too_large'
  | 'bad_request'
  | 'use_connect'
  | 'headers_too_large'
  | 'header_timeout'
  | 'not_implemented'
  | 'length_required'
  | 'dns_failed'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_proxy_unreachable'
  | 'upstream_proxy_auth'
  | 'upstream_proxy_refused'
  | 'too_many_connections'
  | 'audit_unavailable'
  | 'upstream_tls_error'
  | 'authority_mismatch';

const STATUS: Record<ProxyErrorKind, [number, string]> = {
  policy_denied: [403, 'Forbidden'],
  ssrf_denied: [403, 'Forbidden'],
  integrity_violation: [403, 'Forbidden'],
  inspection_unavailable: [403, 'Forbidden'],
  credential_not_bound: [403, 'Forbidden'],
  body_too_large: [413, 'Payload Too Large'],
  bad_request: [400, 'Bad Request'],
  use_connect: [400, 'Bad Request'],
  headers_too_large: [431, 'Request Header Fields Too Large'],
  header_timeout: [408, 'Request Timeout'],
  not_implemented: [501, 'Not Implemented'],
  length_required: [411, 'Length Required'],
  dns_failed: [502, 'Bad Gateway'],
  upstream_unreachable: [502, 'Bad Gateway'],
  upstream_timeout: [504, 'Gateway Timeout'],
  upstream_proxy_unreachable: [502, 'Bad Gateway'],
  upstream_proxy_auth: [502, 'Bad Gateway'],
  upstream_proxy_refused: [502, 'Bad Gateway'],
  too_many_connections: [503, 'Service Unavailable'],
  audit_unavailable: [503, 'Service Unavailable'],
  upstream_tls_error: [502, 'Bad Gateway'],
  // RFC 9110 §15.5.20: this connection cannot answer for that host; a client opens another.
  authority_mismatch: [421, 'Misdirected Request'],
};

export function statusOf(kind: ProxyErrorKind): number {
  return STATUS[kind][0];
}

export interface DenialFacts {
  kind: ProxyErrorKind;
  /** The specific reason (the engine's, or the proxy's). */
  detail: string;
  policy?: string | null;
  binary?: string | null;
  host?: string;
  port?: number;
}

const NO_WORKAROUND =
  'Retrying will get the same answer, and connecting directly (without the proxy) will not work either: outbound traffic from this environment is only possible through this proxy.';

/** A sentence that says what happened, for the `message` field. */
function explain(f: DenialFacts): string {
  const where = f.host !== undefined ? `${f.host.includes(':') ? `[${f.host}]` : f.host}:${f.port ?? ''}` : 'the destination';
  switch (f.kind) {
    case 'policy_denied':
      return `portcullis egress policy refused the connection to ${where} for ${f.binary ?? 'this program'}: ${f.detail}. ${NO_WORKAROUND} If this access is needed, ask the operator to add it to the egress policy.`;
    case 'ssrf_denied':
      return `portcullis refused to connect to ${where}: ${f.detail}. Connections to internal, loopback, link-local (cloud metadata) and other special addresses are blocked. ${NO_WORKAROUND}`;
    case 'integrity_violation':
    case 'inspection_unavailable':
    case 'credential_not_bound':
      return `portcullis refused the connection to ${where}: ${f.detail}. ${NO_WORKAROUND}`;
    case 'dns_failed':
      return `portcullis could not resolve ${f.host ?? 'the host'}: ${f.detail}.`;
    case 'upstream_unreachable':
      return `portcullis could not connect to ${where}: ${f.detail}. The request was allowed; the destination did not accept the connection.`;
    case 'upstream_timeout':
      return `portcullis timed out connecting to ${where}: ${f.detail}.`;
    case 'upstream_proxy_unreachable':
    case 'upstream_proxy_auth':
    case 'upstream_proxy_refused':
      return `portcullis allowed the connection to ${where}, but the upstream proxy it must go through did not open it: ${f.detail}. This is a matter for the operator of the proxies, not of the egress policy.`;
    case 'audit_unavailable':
      return `portcullis cannot write its audit log at the moment and refuses new connections until it can (nothing leaves unrecorded). This is temporary: try again later.`;
    case 'upstream_tls_error':
      return `portcullis could not make a trusted TLS connection to ${where}: ${f.detail}. The request was allowed; it was not sent.`;
    case 'authority_mismatch':
      return `portcullis refused the request: ${f.detail}. A connection to one host cannot carry requests for another; open a new connection for it.`;
    case 'use_connect':
      return `${f.detail}. Configure the client to use this proxy with CONNECT for https URLs (e.g. set https_proxy).`;
    default:
      return f.detail;
  }
}

export interface ErrorAnswer {
  status: number;
  statusText: string;
  /** `deny` for a 403 or 421 (the policy said no), `error` otherwise. */
  decision: 'deny' | 'error';
  /** The JSON body, newline-terminated. */
  json: string;
}

/** The status and JSON body of a refusal, for any protocol that carries it (HTTP/1.1, HTTP/2). */
export function errorAnswer(f: DenialFacts): ErrorAnswer {
  const [status, statusText] = STATUS[f.kind];
  const body: Record<string, unknown> = { error: f.kind, detail: f.detail, policy: f.policy ?? null, binary: f.binary ?? null };
  if (f.host !== undefined) body.host = f.host;
  if (f.port !== undefined) body.port = f.port;
  body.message = explain(f);
  return { status, statusText, decision: status === 403 || status === 421 ? 'deny' : 'error', json: `${JSON.stringify(body)}\n` };
}

export function errorResponse(f: DenialFacts, extraHeaders: Record<string, string> = {}): Buffer {
  const answer = errorAnswer(f);
  const headers = {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(answer.json)),
    'X-Portcullis-Decision': answer.decision,
    Connection: 'close',
    ...extraHeaders,
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return Buffer.from(`HTTP/1.1 ${answer.status} ${answer.statusText}\r\n${head}\r\n${answer.json}`);
}

export const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n');
