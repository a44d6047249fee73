// One srt-proxy request → one policy decision → one verdict and one audit event. srt-proxy does
// not know which program sent the request, so the caller is `<unresolved>`: only policies
// without `binaries` can allow it, exactly the fallback the policy language defines.
import type { AuditEvent } from '../audit/events.js';
import type { PolicyEngine } from '../engine/engine.js';
import { buildDecisionInput } from '../engine/input.js';
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

export function verdictFor(engine: PolicyEngine, req: DeciderRequest, reportOnly: boolean): RequestVerdict {
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
  return { verdict, event };
}
