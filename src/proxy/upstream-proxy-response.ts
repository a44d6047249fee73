// The response to a plain HTTP request sent through the upstream proxy goes to the client as it
// is, except the upstream proxy's own 407: that is about the credentials between the two
// proxies, which the client neither has nor can send (its Proxy-Authorization never passes), so
// it gets 502 upstream_proxy_auth, as a tunnel would, and the refusal is audited.
import type net from 'node:net';
import { refuseHttp } from './answers.js';
import { callerFields, peerOf } from './caller.js';
import type { Pipeline } from './pipeline.js';
import type { Dialed } from './tunnels.js';
import { ConnectReplyReader, connectReplyRefusal, type UpstreamProxy } from './upstream-proxy.js';

/** Relays the upstream's response to the client once its status line shows it is not the upstream proxy's 407. */
export function relayProxiedResponse(p: Pipeline, client: net.Socket, dialed: Dialed, proxy: UpstreamProxy): void {
  const { upstream, facts, identity } = dialed;
  const reader = new ConnectReplyReader();
  // An upstream that ends within a head still has its bytes passed on.
  const onEnd = (): void => void client.write(reader.bytes());
  const onData = (chunk: Buffer): void => {
    const head = reader.feed(chunk);
    if (head.status === 'partial') return;
    upstream.off('data', onData);
    upstream.off('end', onEnd);
    if (head.status === 'done' && head.code === 407) {
      const refusal = connectReplyRefusal(proxy, head.code, head.reason, `${facts.host}:${facts.port}`)!;
      p.error({ kind: 'http', error: refusal.kind, error_detail: refusal.detail, upstream_proxy_status: head.code, host: facts.host, port: facts.port, ...callerFields(identity), client: peerOf(client) });
      refuseHttp(client, { kind: refusal.kind, detail: refusal.detail, binary: identity.path, host: facts.host, port: facts.port });
      upstream.destroy();
      return;
    }
    // Anything else (a response head, or bytes that are not one) passes on unchanged.
    upstream.pause();
    client.write(reader.bytes());
    upstream.pipe(client);
  };
  upstream.on('data', onData);
  upstream.once('end', onEnd);
}
