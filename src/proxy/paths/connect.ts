// CONNECT host:port — the client asks for a tunnel to a host and port it names:
//   1. the target must be a valid authority (else 400);
//   2. who is calling (identity), then the decision for host and port (403 JSON on a deny);
//      when the policy lets host and port through for any caller, the dial starts beside the
//      identity lookup (early-dial.ts) and is taken once the caller's own decision allows it;
//   3. dial exactly the checked addresses (502/504 when none answers);
//   4. "200 Connection Established", and from then on an opaque tunnel, tracked until it ends.
// A connection the policy wants TLS-inspected (decision.inspect, and the proxy has a CA) is not
// dialed here: after the 200 it is handed to inspect/terminate.ts, which decides each request.
import type net from 'node:net';
import { refuseHttp } from '../answers.js';
import type { RequestFacts } from '../authorise.js';
import { refusePlaceholderHost } from '../credential-guard.js';
import { Downstream } from '../downstream.js';
import { inspectConnection } from '../inspect/terminate.js';
import type { RequestHead } from '../http-head.js';
import type { Pipeline } from '../pipeline.js';
import { CONNECT_ESTABLISHED } from '../responses.js';
import { parseConnectTarget } from '../target.js';

/** `rest`: bytes the client sent after the head (its first tunnel bytes, e.g. a ClientHello). */
export async function connect(p: Pipeline, client: net.Socket, head: RequestHead, rest: Buffer): Promise<void> {
  const target = parseConnectTarget(head.target);
  if (!target.ok) return refuseHttp(client, { kind: 'bad_request', detail: target.message });
  const facts: RequestFacts = { host: target.host, port: target.port, ip: target.ip };
  // A tunnel reads the upstream into buffers of its own (downstream.ts).
  const downstream = new Downstream();
  const early = p.dialEarly(facts, downstream);
  const identity = await p.identify(client, false);
  if (refusePlaceholderHost(p, 'connect', client, identity, facts, refuseHttp)) return early?.drop();
  const allowed = await p.decide('connect', client, identity, facts, refuseHttp, early);
  if (!allowed) return;
  if (allowed.decision.inspect === true && p.inspection) {
    client.write(CONNECT_ESTABLISHED);
    return inspectConnection(p, allowed, rest);
  }
  const dialed = await p.dial(allowed, downstream);
  if (!dialed) return;
  client.write(CONNECT_ESTABLISHED);
  if (rest.length > 0) dialed.upstream.write(rest);
  p.tunnels.relay(client, dialed);
  client.resume();
}
