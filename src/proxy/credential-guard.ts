// Credential placeholders where no allowing endpoint binds them: refused (403
// credential_not_bound on HTTP, a close on the SNI listener), with an audit event
// `credential_misuse` that names the credentials (never a value, never a placeholder) and
// nothing forwarded. The swap itself is src/credentials/swap.ts; this is the proxy's answer.
import type net from 'node:net';
import { boundCredentials, placeholdersInHost, swapRequest, type OutgoingRequest } from '../credentials/swap.js';
import type { ProcessIdentity } from '../identity/types.js';
import type { Refusal, Refuse } from './answers.js';
import type { RequestFacts } from './authorise.js';
import { callerFields, peerOf } from './caller.js';
import type { Allowed, Pipeline } from './pipeline.js';
import type { ConnectionKind } from './tunnels.js';

export interface Misuse {
  /** Names of the credentials whose placeholders were seen. */
  credentials: string[];
  /** Where they were seen, in words. */
  where: string;
}

function detailOf(misuse: Misuse, host: string, port: number): string {
  const names = misuse.credentials.map((n) => `"${n}"`).join(', ');
  return `a placeholder of credential ${names} was found in ${misuse.where}, but no endpoint allowing this request to ${host}:${port} binds it for this program; placeholders stand in for secrets the sandbox never holds and are swapped only in requests to the endpoints (and by the programs) the policy binds them to`;
}

/**
 * The `credential_misuse` audit event of a request refused for a placeholder (names only);
 * returns the refusal to answer it with. `client` is the caller's `address:port`.
 */
export function auditMisuse(p: Pipeline, kind: ConnectionKind, client: string, identity: ProcessIdentity, facts: RequestFacts, misuse: Misuse, policy: string | null = null): Refusal {
  const detail = detailOf(misuse, facts.host, facts.port);
  p.refused({
    kind: 'credential_misuse',
    via: kind,
    allow: false,
    decision: 'deny',
    reason: detail,
    policy,
    credentials: misuse.credentials,
    where: misuse.where,
    host: facts.host,
    port: facts.port,
    ...(facts.method !== undefined ? { method: facts.method } : {}),
    ...callerFields(identity),
    client,
    error: 'credential_not_bound',
  });
  return { kind: 'credential_not_bound', detail, policy, binary: identity.path, host: facts.host, port: facts.port };
}

/** Audits the misuse and refuses the client; the request goes nowhere. */
export function refuseMisuse(p: Pipeline, kind: ConnectionKind, client: net.Socket, identity: ProcessIdentity, facts: RequestFacts, misuse: Misuse, refuse: Refuse, policy: string | null = null): void {
  refuse(client, auditMisuse(p, kind, peerOf(client), identity, facts, misuse, policy));
}

/**
 * A CONNECT or SNI host (or a forward request's host) carrying a placeholder: no host binds a
 * credential, so it is refused before any decision. True when refused.
 */
export function refusePlaceholderHost(p: Pipeline, kind: ConnectionKind, client: net.Socket, identity: ProcessIdentity, facts: RequestFacts, refuse: Refuse): boolean {
  const credentials = placeholdersInHost(facts.host, p.credentials.table);
  if (credentials.length === 0) return false;
  refuseMisuse(p, kind, client, identity, facts, { credentials, where: kind === 'sni' ? 'the TLS server name (SNI)' : 'the host name' }, refuse);
  return true;
}

/**
 * A request the policy allowed, refused for a misused placeholder before anything is dialed:
 * the one event is the misuse (naming the policy that allowed the request).
 */
export function refuseAllowed(p: Pipeline, allowed: Allowed, misuse: Misuse): void {
  refuseMisuse(p, allowed.kind, allowed.client, allowed.identity, allowed.facts, misuse, allowed.refuse, allowed.decision.policy);
}

/**
 * An allowed request's headers and target as they go upstream, placeholders swapped for the
 * credentials its decision binds over this transport; null once it was refused (answered with
 * the request's own `refuse`, audited) — then nothing of it may be sent. The plain-HTTP forward
 * path and the inspected paths both call this before writing a request upstream.
 */
export function outgoingWithCredentials(p: Pipeline, allowed: Allowed, request: OutgoingRequest, transport: 'inspected' | 'plain'): OutgoingRequest | null {
  const swapped = swapRequest(request, boundCredentials(allowed.decision, transport).headers, p.credentials.table);
  if (swapped.ok) return { headers: swapped.headers, target: swapped.target };
  refuseAllowed(p, allowed, { credentials: swapped.misused, where: swapped.where });
  return null;
}
