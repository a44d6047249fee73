// One srt-proxy request → one policy decision → one verdict and one audit event. srt-proxy does
// not know which program sent the request, so the caller is `<unresolved>`: only policies
// without `binaries` can allow it, exactly the fallback the policy language defines.
//
// Credentials: srt-proxy places a credential itself (`cred` names it, `credential` carries the
// value for this one request; it removes the client's credential headers and sends
// `Authorization: Bearer <value>` or its configured placement). A request whose headers or
// query carry the placeholder of a credential the allowing endpoint binds gets that
// credential's value in its verdict — the value then travels over the decider link to
// srt-proxy, which holds it for that request only. A request without a server name (plain
// HTTP) may carry only credentials allowed in clear text (and srt-proxy itself refuses to set
// headers on plain HTTP unless configured to). A placeholder of any credential the decision
// does not bind is refused (403 credential_not_bound), as in the proxy.
import type { AuditEvent } from '../audit/events.js';
import type { PolicyEngine } from '../engine/engine.js';
import { buildDecisionInput } from '../engine/input.js';
import { boundCredentials, placeholdersIn, type SwapTable } from '../credentials/swap.js';
import type { Decision } from '../policy/types.js';
import { allowVerdict, denyVerdict, type DeciderRequest } from './messages.js';

export interface RequestVerdict {
  verdict: Record<string, unknown>;
  event: AuditEvent;
}

function decide(engine: PolicyEngine, req: DeciderRequest): Decision {
  const path = req.query !== undefined ? `${req.path}?${req.query}` : req.path;
  try {
    return engine.decide(buildDecisionInput({ host: req.host, port: req.port, method: req.method, path }));
  } catch (err) {
    return { allow: false, decision: 'deny', reason: `request refused: ${(err as Error).message}`, policy: null };
  }
}

type CredentialUse = { kind: 'none' } | { kind: 'use'; name: string; value: string } | { kind: 'refuse'; credentials: string[]; reason: string };

/** The credential this request's placeholders ask for, if the decision binds it. */
function credentialUse(req: DeciderRequest, decision: Decision, table: SwapTable): CredentialUse {
  if (table.byPlaceholder.size === 0) return { kind: 'none' };
  const texts = [...Object.values(req.headers ?? {}).flat(), req.query ?? ''];
  const seen = [...new Set(texts.flatMap((text) => placeholdersIn(text, table)))].sort();
  if (seen.length === 0) return { kind: 'none' };
  // A request without a server name came as plain HTTP: only credentials allowed in clear text.
  const bound = new Set(decision.allow ? boundCredentials(decision, req.sni !== undefined ? 'inspected' : 'plain').headers : []);
  const misused = seen.filter((name) => !bound.has(name));
  if (misused.length > 0) {
    const names = misused.map((n) => `"${n}"`).join(', ');
    return { kind: 'refuse', credentials: misused, reason: `credential_not_bound: a placeholder of credential ${names} was sent to ${req.host}:${req.port}, which no endpoint allowing this request binds it to` };
  }
  if (seen.length > 1) return { kind: 'refuse', credentials: seen, reason: `one request can carry one credential through srt-proxy; this one carries placeholders of ${seen.join(', ')}` };
  const entry = [...table.byPlaceholder.values()].find((e) => e.name === seen[0]);
  return entry ? { kind: 'use', name: entry.name, value: entry.value.reveal() } : { kind: 'none' };
}

export function verdictFor(engine: PolicyEngine, req: DeciderRequest, reportOnly: boolean): RequestVerdict {
  const first = verdictWithoutCredentials(engine, req, reportOnly);
  const use = credentialUse(req, first.decision, engine.credentials.table);
  if (use.kind === 'none') return { verdict: first.verdict, event: first.event };
  if (use.kind === 'refuse') {
    const event: AuditEvent = { ...first.event, kind: 'credential_misuse', allow: false, decision: 'deny', reason: use.reason, credentials: use.credentials, error: 'credential_not_bound' };
    return { verdict: denyVerdict(req.id, 403, use.reason), event };
  }
  return { verdict: { ...first.verdict, cred: use.name, credential: use.value }, event: { ...first.event, credential_placed: use.name } };
}

function verdictWithoutCredentials(engine: PolicyEngine, req: DeciderRequest, reportOnly: boolean): RequestVerdict & { decision: Decision } {
  let decision = decide(engine, req);
  if (!decision.allow && reportOnly) decision = { ...decision, allow: true, decision: 'audit', reason: `report-only, would deny: ${decision.reason}` };
  const { explicit_ips: _explicit, ...fields } = decision;
  const event: AuditEvent = {
    kind: 'http',
    via: 'srt-proxy',
    ...fields,
    host: req.host,
    port: req.port,
    method: req.method,
    path: req.path,
    binary: null,
    pid: null,
    ancestors: [],
    unresolved_reason: 'not_known_to_srt_proxy',
    request_id: req.id,
  };
  if (req.sni !== undefined) event.sni = req.sni;
  const verdict = decision.allow ? allowVerdict(req.id) : denyVerdict(req.id, 403, decision.reason);
  return { verdict, event, decision };
}
