// The transparent listener: TCP/443 redirected to the proxy. The ClientHello's server name is
// the host to decide on (port 443); the hello itself goes upstream unchanged, so the TLS session
// is between the client and the real server — unless the policy wants the connection inspected
// (inspect/terminate.ts: the hello is replayed into the proxy's own TLS server). With no TLS
// session of its own to answer in, the proxy refuses by closing, and audits why.
import type net from 'node:net';
import type { ProcessIdentity } from '../../identity/types.js';
import { refuseByClosing } from '../answers.js';
import type { RequestFacts } from '../authorise.js';
import { callerFields, peerOf } from '../caller.js';
import { ClientHelloReader } from '../client-hello.js';
import { refusePlaceholderHost } from '../credential-guard.js';
import { Downstream } from '../downstream.js';
import { inspectConnection } from '../inspect/terminate.js';
import type { Pipeline } from '../pipeline.js';
import { readHead } from '../read-head.js';
import { parseHost } from '../target.js';

export function acceptSni(p: Pipeline, client: net.Socket): void {
  const peer = peerOf(client);
  const identity = (): Promise<ProcessIdentity> => p.identify(client, true);
  const fail = (reason: string): void => void refuseHello(p, client, identity, peer, reason);
  const reader = new ClientHelloReader(p.limits.maxHelloBytes);
  const deadline = performance.now() + p.limits.helloTimeoutMs;
  readHead(client, reader, deadline, () => fail(`no complete ClientHello within ${p.limits.helloTimeoutMs} ms`), (hello) => {
    if (hello.status === 'error') return fail(`malformed ClientHello: ${hello.message}`);
    if (hello.serverName === null) return fail('ClientHello without a server name (SNI)');
    const host = parseHost(hello.serverName);
    if (!host.ok) return fail(`bad server name: ${host.message}`);
    const facts: RequestFacts = { host: host.host, port: 443, ip: host.ip };
    tunnel(p, client, identity, facts, reader.received()).catch(() => client.destroy());
  });
}

async function tunnel(p: Pipeline, client: net.Socket, identity: () => Promise<ProcessIdentity>, facts: RequestFacts, hello: Buffer): Promise<void> {
  // The dial may start beside the identity lookup (early-dial.ts).
  const downstream = new Downstream();
  const early = p.dialEarly(facts, downstream);
  if (refusePlaceholderHost(p, 'sni', client, await identity(), facts, refuseByClosing)) return early?.drop();
  const allowed = await p.decide('sni', client, await identity(), facts, refuseByClosing, early);
  if (!allowed) return;
  if (allowed.decision.inspect === true && p.inspection) return inspectConnection(p, allowed, hello);
  const dialed = await p.dial(allowed, downstream);
  if (!dialed) return;
  dialed.upstream.write(hello);
  p.tunnels.relay(client, dialed);
  client.resume();
}

/** A hello that names no host to decide on: closed, and audited as a denied `sni` event. */
async function refuseHello(p: Pipeline, client: net.Socket, identity: () => Promise<ProcessIdentity>, peer: string, reason: string): Promise<void> {
  // Who sent it is looked up before closing, while the socket row still exists.
  const caller = await identity();
  client.destroy();
  p.error({
    kind: 'sni',
    allow: false,
    decision: 'deny',
    reason,
    policy: null,
    host: null,
    port: 443,
    ...callerFields(caller),
    client: peer,
    error: 'bad_client_hello',
  });
}
