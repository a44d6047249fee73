// Dialing an upstream, along the connection's route (upstream-proxy.ts):
// - direct: exactly the addresses the decision checked (one lookup, done before the decision:
//   no second lookup here, so DNS rebinding cannot slip a new address in), in order, the first
//   that answers within the connect timeout wins;
// - via the upstream proxy: a tunnel is its CONNECT to the decided host and port, handed back
//   as if dialed directly (bytes after its 200 kept); a forward request goes to it in absolute
//   form, so the caller is told to write that form.
import net from 'node:net';
import type { Downstream } from './downstream.js';
import { RELAY_HIGH_WATER_MARK } from './relay.js';
import type { ProxyErrorKind } from './responses.js';
import { ConnectReplyReader, authorityOf, connectReplyRefusal, connectRequest, upstreamProxyName, type ReplyParse, type Route, type UpstreamProxy } from './upstream-proxy.js';

export interface DialFailure {
  kind: ProxyErrorKind;
  detail: string;
  /** The upstream proxy's status, when it answered with a refusal. */
  upstreamProxyStatus?: number;
}

/** What the connection is for: an opaque tunnel, or one forward HTTP request the caller writes. */
export type DialPurpose = 'tunnel' | 'request';

export interface DialedUpstream {
  socket: net.Socket;
  /** A request must be written in absolute form, for this upstream proxy (with its Proxy-Authorization, if any). */
  absoluteForm?: { proxy: UpstreamProxy };
}

export interface DialTarget {
  /** The decided host: a canonical name or the checked IP literal. */
  host: string;
  port: number;
  /** The checked addresses of `host`. */
  addresses: string[];
}

export async function dialRoute(route: Route, target: DialTarget, purpose: DialPurpose, timeoutMs: number, downstream?: Downstream): Promise<DialedUpstream | DialFailure> {
  if (route.via === 'direct') {
    const socket = await dialChecked(target.addresses, target.port, timeoutMs, downstream);
    return socket instanceof net.Socket ? { socket } : socket;
  }
  const { proxy } = route;
  if (purpose === 'request') {
    const socket = await dialOne(proxy.host, proxy.port, timeoutMs, undefined);
    if (!(socket instanceof net.Socket)) return unreachable(proxy, socket);
    return { socket, absoluteForm: { proxy } };
  }
  const socket = await connectThrough(proxy, target, timeoutMs, downstream);
  return socket instanceof net.Socket ? { socket } : socket;
}

export async function dialChecked(addresses: string[], port: number, timeoutMs: number, downstream?: Downstream): Promise<net.Socket | DialFailure> {
  let last: DialFailure = { kind: 'upstream_unreachable', detail: 'no address to dial' };
  for (const address of addresses) {
    const result = await dialOne(address, port, timeoutMs, downstream?.onread);
    if (result instanceof net.Socket) return result;
    last = result;
  }
  return last;
}

type Onread = Downstream['onread'];

function dialOne(address: string, port: number, timeoutMs: number, onread: Onread | undefined): Promise<net.Socket | DialFailure> {
  return new Promise((resolve) => {
    // highWaterMark reaches the socket's Duplex options (the typings of net.connect omit it).
    const upstream = net.connect({
      host: address,
      port,
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: RELAY_HIGH_WATER_MARK,
      ...(onread ? { onread } : {}),
    } as net.NetConnectOpts);
    const timer = setTimeout(() => {
      upstream.destroy();
      resolve({ kind: 'upstream_timeout', detail: `no answer from ${address} port ${port} within ${timeoutMs} ms` });
    }, timeoutMs);
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.removeAllListeners('error');
      // Until the relay takes over, an error just ends the socket (never an uncaught 'error').
      upstream.on('error', () => upstream.destroy());
      resolve(upstream);
    });
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      upstream.destroy();
      resolve({ kind: 'upstream_unreachable', detail: `${address} port ${port}: ${err.code ?? err.message}` });
    });
  });
}

function unreachable(proxy: UpstreamProxy, failure: DialFailure): DialFailure {
  return { kind: 'upstream_proxy_unreachable', detail: `the upstream proxy ${upstreamProxyName(proxy)} cannot be reached: ${failure.detail}` };
}

/** Opens a tunnel to the target through the upstream proxy's CONNECT. */
async function connectThrough(proxy: UpstreamProxy, target: DialTarget, timeoutMs: number, downstream: Downstream | undefined): Promise<net.Socket | DialFailure> {
  const reply = replyWatcher(downstream);
  const socket = await dialOne(proxy.host, proxy.port, timeoutMs, reply.onread);
  if (!(socket instanceof net.Socket)) return unreachable(proxy, socket);
  const authority = authorityOf(target.host, target.port);
  socket.write(connectRequest(target.host, target.port, proxy.authorization));
  const answer = await reply.wait(socket, timeoutMs);
  let failure: DialFailure | null;
  if (answer.status === 'done') failure = connectReplyRefusal(proxy, answer.code, answer.reason, authority);
  else if (answer.timeout) failure = { kind: 'upstream_timeout', detail: `the upstream proxy ${upstreamProxyName(proxy)}: ${answer.message}` };
  else failure = unreachable(proxy, { kind: 'upstream_proxy_unreachable', detail: answer.message });
  if (failure) {
    socket.destroy();
    return failure;
  }
  return socket;
}

type ReplyOutcome = Exclude<ReplyParse, { status: 'partial' | 'error' }> | { status: 'error'; message: string; timeout?: boolean };

/**
 * Reads the CONNECT reply off the socket, then gets out of the way: with a Downstream (net's
 * `onread`), the reply's bytes are read here and what follows them goes to the Downstream;
 * without one, the bytes after the reply are put back into the socket.
 */
function replyWatcher(downstream: Downstream | undefined): { onread: Onread | undefined; wait(socket: net.Socket, timeoutMs: number): Promise<ReplyOutcome> } {
  const reader = new ConnectReplyReader();
  let settle: ((outcome: ReplyOutcome) => void) | undefined;
  let outcome: ReplyOutcome | undefined;
  const feed = (chunk: Buffer): ReplyParse => {
    const parsed = reader.feed(chunk);
    if (parsed.status !== 'partial') {
      outcome = parsed;
      settle?.(parsed);
    }
    return parsed;
  };
  const scratch = Buffer.allocUnsafe(4096);
  const onread: Onread | undefined = downstream && {
    buffer: () => (outcome ? downstream.onread.buffer() : scratch),
    callback: (bytes, buffer) => {
      if (outcome) return downstream.onread.callback(bytes, buffer);
      // Copied: the scratch buffer is read into again.
      const parsed = feed(Buffer.from(buffer.subarray(0, bytes)));
      if (parsed.status !== 'done') return parsed.status === 'partial';
      return parsed.rest.length === 0 || downstream.onread.callback(parsed.rest.length, parsed.rest);
    },
  };
  const wait = (socket: net.Socket, timeoutMs: number): Promise<ReplyOutcome> =>
    new Promise((resolve) => {
      if (outcome) return resolve(outcome);
      const timer = setTimeout(() => done({ status: 'error', message: `no answer to CONNECT within ${timeoutMs} ms`, timeout: true }), timeoutMs);
      // Read with read(), not 'data': once its listener is gone the socket is back in its first
      // state (neither flowing nor paused), and whoever takes it reads on as from a fresh one.
      const onReadable = (): void => {
        let chunk: Buffer | null;
        while (!outcome && (chunk = socket.read() as Buffer | null) !== null) {
          const parsed = feed(chunk);
          if (parsed.status === 'done' && parsed.rest.length > 0) socket.unshift(parsed.rest);
        }
      };
      const onEnd = (): void => done({ status: 'error', message: 'it closed the connection without answering CONNECT' });
      const done = (result: ReplyOutcome): void => {
        clearTimeout(timer);
        socket.off('readable', onReadable);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        settle = undefined;
        // With a Downstream the socket reads on, into its buffers, once the relay resumes it.
        if (downstream) socket.pause();
        resolve(result);
      };
      settle = done;
      // Flowing, so that an end before the answer is seen (with a Downstream, no data is emitted).
      if (downstream) socket.resume();
      else socket.on('readable', onReadable);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
    });
  return { onread, wait };
}
