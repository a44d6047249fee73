// Deciding one request on an inspected connection (HTTP/1.1 request or HTTP/2 stream): its path
// must have the one canonical form (else 400), its authority (`Host`, `:authority`) must name
// the connection's host and port (else 421: a connection decided for one host never carries
// another's requests), and then the policy in force now decides method and path.
import type { Decision } from '../../policy/types.js';
import { canonicalRequestPath } from '../../http/request-path.js';
import type { Refusal } from '../answers.js';
import type { RequestFacts } from '../authorise.js';
import { parseConnectTarget, parseHost } from '../target.js';
import type { InspectedConnection } from './connection.js';

export interface RequestAsked {
  method: string;
  /** The request target as sent (origin-form expected). */
  target: string;
  /** `Host` / `:authority`, undefined when the request has none. */
  authority: string | undefined;
}

export type RequestVerdict =
  | { ok: true; facts: RequestFacts & { method: string; path: string }; decision: Decision }
  | { ok: false; facts: RequestFacts; decision: Decision | null; refusal: Refusal; error: string };

/** Whether `authority` names `host` on `port` (a missing port means 443). */
function namesConnection(authority: string, host: string, port: number): boolean {
  const withPort = /:\d+$/.test(authority) && !authority.endsWith(']') ? authority : `${authority}:443`;
  const parsed = parseConnectTarget(withPort);
  if (parsed.ok) return parsed.host === host && parsed.port === port;
  const bare = parseHost(authority);
  return bare.ok && bare.host === host && port === 443;
}

export function decideRequest(conn: InspectedConnection, asked: RequestAsked): RequestVerdict {
  const { identity, facts: connection, addresses } = conn.tracked;
  const who = { binary: identity.path, host: connection.host, port: connection.port };
  const base: RequestFacts = { host: connection.host, port: connection.port, ip: connection.ip, method: asked.method };
  const refuse = (kind: Refusal['kind'], detail: string, error: string, decision: Decision | null = null): RequestVerdict => {
    conn.p.countRefusal();
    return { ok: false, facts: base, decision, error, refusal: { kind, detail, policy: decision?.policy ?? null, ...who } };
  };
  const path = canonicalRequestPath(asked.target);
  if (!path.ok) return refuse('bad_request', path.message, 'bad_request');
  base.path = path.path;
  if (asked.authority === undefined || asked.authority === '') return refuse('bad_request', 'the request names no host (Host or :authority)', 'bad_request');
  if (!namesConnection(asked.authority.toLowerCase(), connection.host, connection.port)) {
    const detail = `the request is for "${asked.authority}", and this connection was opened (and decided) for ${connection.host}:${connection.port}`;
    return refuse('authority_mismatch', detail, 'authority_mismatch');
  }
  const facts = { ...base, method: asked.method, path: path.path };
  const decision = conn.p.decideRequest(identity, facts, addresses);
  if (!decision.allow) return { ok: false, facts, decision, error: 'policy_denied', refusal: { kind: 'policy_denied', detail: decision.reason, policy: decision.policy, ...who } };
  return { ok: true, facts, decision };
}
