// Forward HTTP — a request in absolute form (`GET http://host/path HTTP/1.1`):
//   1. the target must be an http:// URL and the body's framing unambiguous (else 400/501);
//   2. who is calling, then the decision on host, port, method and path (L7 rules);
//   3. dial exactly the checked addresses;
//   4. one request goes upstream: origin-form, with the path the decision saw, hop-by-hop
//      fields dropped, `Connection: close`, and exactly the declared body — bytes after it are
//      never forwarded, so a second request cannot ride past the decision. The response comes
//      back as it is, and the connection ends with it.
import type net from 'node:net';
import { refuseHttp } from '../answers.js';
import type { RequestFacts } from '../authorise.js';
import { ChunkedBodyScanner } from '../chunked.js';
import { connectionOptions, requestBodyFraming, type BodyFraming, type RequestHead } from '../http-head.js';
import type { CloseCause } from '../relay.js';
import { parseAbsoluteTarget } from '../target.js';
import type { DialedRoute, Pipeline } from '../pipeline.js';
import { relayProxiedResponse } from '../upstream-proxy-response.js';

export async function forward(p: Pipeline, client: net.Socket, head: RequestHead, rest: Buffer): Promise<void> {
  const target = parseAbsoluteTarget(head.target);
  if (!target.ok) return refuseHttp(client, { kind: target.useConnect ? 'use_connect' : 'bad_request', detail: target.message });
  const framing = requestBodyFraming(head);
  if (framing.kind === 'error') return refuseHttp(client, { kind: framing.code === 501 ? 'not_implemented' : 'bad_request', detail: framing.message });
  const facts: RequestFacts & { path: string } = { host: target.host, port: target.port, ip: target.ip, method: head.method, path: target.path };
  const identity = await p.identify(client, false);
  const allowed = await p.decide('http', client, identity, facts, refuseHttp);
  if (!allowed) return;
  const dialed = await p.dial(allowed, undefined, 'request');
  if (!dialed) return;
  // The path sent is the path decided: taken from the facts, never from the target again.
  dialed.upstream.write(upstreamHead(head, facts.path, target.authority, framing.kind === 'chunked', dialed.absoluteForm?.proxy));
  relayExchange(p, client, dialed, framing, rest);
}

const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/**
 * The request head sent upstream: origin-form target, hop-by-hop fields dropped, one request
 * per connection. (A request whose `Connection` names a framing field was refused before.)
 */
function upstreamHead(head: RequestHead, path: string, authority: string, chunked: boolean, viaProxy?: { authorization?: string }): Buffer {
  const named = connectionOptions(head);
  // To an upstream proxy: absolute form, with its credentials (the client's never pass).
  const requestTarget = viaProxy ? `http://${authority}${path}` : path;
  let text = `${head.method} ${requestTarget} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (viaProxy?.authorization !== undefined) text += `Proxy-Authorization: ${viaProxy.authorization}\r\n`;
  for (const { name, value } of head.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    text += `${name}: ${value}\r\n`;
  }
  if (chunked) text += 'Transfer-Encoding: chunked\r\n';
  return Buffer.from(`${text}Connection: close\r\n\r\n`, 'latin1');
}

/** The body up (exactly, with backpressure), the response down, until either side ends. */
function relayExchange(p: Pipeline, client: net.Socket, dialed: DialedRoute, framing: BodyFraming, rest: Buffer): void {
  const { upstream } = dialed;
  const bytes = { bytesUp: 0, bytesDown: 0 };
  const stopBoth = (cause: CloseCause): void => {
    end(cause, bytes);
    client.destroy();
    upstream.destroy();
  };
  const end = p.tunnels.add(dialed, stopBoth);
  const body = bodyTaker(framing);
  /** Passes on the body's part of a chunk; false: wait for the upstream to drain. */
  const forwardBody = (chunk: Buffer): boolean => {
    if (body.done) return true;
    const taken = body.take(chunk);
    if (taken === null) {
      stopBoth('error');
      return false;
    }
    bytes.bytesUp += taken.length;
    return taken.length === 0 || upstream.write(taken);
  };
  client.on('data', (chunk: Buffer) => {
    if (!forwardBody(chunk)) {
      client.pause();
      upstream.once('drain', () => client.resume());
    }
  });
  if (forwardBody(rest)) client.resume();
  else upstream.once('drain', () => client.resume());
  upstream.on('data', (chunk: Buffer) => (bytes.bytesDown += chunk.length));
  if (dialed.absoluteForm) relayProxiedResponse(p, client, dialed, dialed.absoluteForm.proxy);
  else upstream.pipe(client);
  client.setTimeout(p.limits.idleTimeoutMs, () => stopBoth('idle'));
  upstream.on('error', () => stopBoth('error'));
  client.on('error', () => stopBoth('error'));
  upstream.once('close', () => {
    end('finished', bytes);
    client.end();
  });
  client.once('close', () => {
    end('finished', bytes);
    upstream.destroy();
  });
}

/** Hands out the bytes of one request body and nothing after it; null on a framing error. */
function bodyTaker(framing: BodyFraming): { done: boolean; take(chunk: Buffer): Buffer | null } {
  if (framing.kind === 'length') {
    let remaining = framing.length;
    return {
      get done() {
        return remaining === 0;
      },
      take(chunk) {
        const piece = chunk.subarray(0, remaining);
        remaining -= piece.length;
        return piece;
      },
    };
  }
  if (framing.kind === 'chunked') {
    const scanner = new ChunkedBodyScanner();
    let done = false;
    return {
      get done() {
        return done;
      },
      take(chunk) {
        const fed = scanner.feed(chunk);
        if ('error' in fed) return null;
        done = fed.done;
        return chunk.subarray(0, fed.consumed);
      },
    };
  }
  return { done: true, take: () => Buffer.alloc(0) };
}
