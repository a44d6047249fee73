// The open tunnels: every connection that relays bytes once its decision was made (an opaque
// CONNECT, SOCKS5 or SNI tunnel, a forward HTTP exchange). Kept so that a reload can cut those the new
// policy denies and a shutdown can end them all; each ends with exactly one `tunnel` event.
import type net from 'node:net';
import type { AuditEvent } from '../audit/events.js';
import type { AuditSink } from '../audit/sink.js';
import type { ProcessIdentity } from '../identity/types.js';
import type { Decision } from '../policy/types.js';
import type { RequestFacts } from './authorise.js';
import { callerFields, writeCallerFields } from './caller.js';
import type { Downstream } from './downstream.js';
import { Relay, type CloseCause, type RelayStats } from './relay.js';

export type ConnectionKind = 'connect' | 'http' | 'sni' | 'socks';

/** A connection whose decision allowed it, as the open-tunnel list knows it. */
export interface Tracked {
  kind: ConnectionKind;
  identity: ProcessIdentity;
  facts: RequestFacts;
  /** The checked addresses (what a reload decides on again). */
  addresses: string[];
  /** The address that answered (for an inspected connection: the last one its requests went to). */
  dialed: string;
  /** TLS-inspected: its requests are decided one by one, and the audit says so. */
  inspected?: { alpn: string };
}

/** A connection whose decision allowed it and whose upstream answered. */
export interface Dialed extends Tracked {
  upstream: net.Socket;
  /** For opaque tunnels: how the upstream's bytes reach the client (see downstream.ts). */
  downstream: Downstream | undefined;
}

interface OpenTunnel {
  dialed: Tracked;
  /** Ends the connection (both sides); its tunnel event says why. */
  stop(cause: CloseCause): void;
}

/** Records a tunnel's end: the first call emits its event, later calls do nothing. */
export type TunnelEnd = (cause: CloseCause, bytes: RelayStats) => void;

export class Tunnels {
  private readonly open = new Set<OpenTunnel>();
  private readonly emptied: Array<() => void> = [];

  constructor(
    private readonly audit: AuditSink,
    private readonly counters: { tunnels: number },
    private readonly idleTimeoutMs: number,
  ) {}

  /** Registers a relaying connection that `stop` can end. */
  add(dialed: Tracked, stop: (cause: CloseCause) => void): TunnelEnd {
    const started = process.hrtime.bigint();
    const tunnel: OpenTunnel = { dialed, stop };
    this.open.add(tunnel);
    this.counters.tunnels++;
    return (cause, bytes) => {
      if (!this.open.delete(tunnel)) return;
      this.counters.tunnels--;
      if (this.open.size === 0) for (const resolve of this.emptied.splice(0)) resolve();
      // Built in place, field by field in the order of the line: no caller object to spread.
      const event: AuditEvent = { kind: 'tunnel', via: dialed.kind, host: dialed.facts.host, port: dialed.facts.port, dialed: dialed.dialed };
      writeCallerFields(event, dialed.identity);
      event.bytes_up = bytes.bytesUp;
      event.bytes_down = bytes.bytesDown;
      event.duration_ms = Number(process.hrtime.bigint() - started) / 1e6;
      event.closed_by = cause;
      if (dialed.inspected) {
        event.inspected = true;
        event.alpn = dialed.inspected.alpn;
      }
      this.audit.emit(event);
    };
  }

  /** Relays bytes both ways between the client and its upstream until either ends. */
  relay(client: net.Socket, dialed: Dialed): void {
    const end = this.add(dialed, (cause) => relay.stop(cause));
    const relay = new Relay(client, dialed.upstream, dialed.downstream, this.idleTimeoutMs, end);
  }

  /** Stops the open tunnels that `decide` now denies (after a reload); returns how many. */
  cutDenied(decide: (dialed: Tracked) => Decision): number {
    let closed = 0;
    for (const tunnel of [...this.open]) {
      const { kind, facts, identity } = tunnel.dialed;
      const decision = decide(tunnel.dialed);
      if (decision.allow) continue;
      closed++;
      this.audit.emit({ kind, ...decision, host: facts.host, port: facts.port, ...callerFields(identity), detail: 'open connection closed: the reloaded policy denies it' });
      tunnel.stop('policy_reload');
    }
    return closed;
  }

  stopAll(cause: CloseCause): void {
    for (const tunnel of [...this.open]) tunnel.stop(cause);
  }

  /** Resolves once no tunnel is open: each stopped one has ended, its event emitted. */
  ended(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }
}
