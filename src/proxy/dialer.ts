// Dialing an upstream: exactly the addresses the decision checked (one lookup, done before the
// decision: no second lookup here, so DNS rebinding cannot slip a new address in), in order,
// the first that answers within the connect timeout wins.
import net from 'node:net';
import type { Downstream } from './downstream.js';
import { RELAY_HIGH_WATER_MARK } from './relay.js';
import type { ProxyErrorKind } from './responses.js';

export interface DialFailure {
  kind: ProxyErrorKind;
  detail: string;
}

export async function dialChecked(addresses: string[], port: number, timeoutMs: number, downstream?: Downstream): Promise<net.Socket | DialFailure> {
  let last: DialFailure = { kind: 'upstream_unreachable', detail: 'no address to dial' };
  for (const address of addresses) {
    const result = await dialOne(address, port, timeoutMs, downstream);
    if (result instanceof net.Socket) return result;
    last = result;
  }
  return last;
}

function dialOne(address: string, port: number, timeoutMs: number, downstream: Downstream | undefined): Promise<net.Socket | DialFailure> {
  return new Promise((resolve) => {
    // highWaterMark reaches the socket's Duplex options (the typings of net.connect omit it).
    const upstream = net.connect({
      host: address,
      port,
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: RELAY_HIGH_WATER_MARK,
      ...(downstream ? { onread: downstream.onread } : {}),
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
