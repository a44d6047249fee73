// Dialing before the caller is known. When the policy lets a host and port through for a caller
// it cannot name (its decision for `<unresolved>`: a policy without binaries covers them), no
// program can be refused that tunnel, so the lookup and the dial need not wait for the identity
// lookup: they run beside it. The identity is still resolved, decided on and audited as always;
// the early dial is taken only when that decision allows the same tunnel (not inspected) over the
// same checked addresses, and dropped otherwise (a TCP handshake, never a byte of the client's).
import type { DialFailure, DialedUpstream } from './dialer.js';
import type { Downstream } from './downstream.js';
import type { UpstreamLookup } from './upstream-dns.js';

/**
 * One lookup of the tunnel's host, shared by the decision for any caller and the caller's own:
 * the addresses it dials are the ones the caller's decision checks, and a failed lookup is not
 * waited for twice.
 */
export function sharedLookup(lookup: UpstreamLookup, host: string): UpstreamLookup {
  let answer: Promise<string[]> | undefined;
  return { lookup: (name) => (name === host ? (answer ??= lookup.lookup(name)) : lookup.lookup(name)) };
}

export class EarlyDial {
  private taken = false;

  constructor(
    /** The host's one lookup (sharedLookup), for the caller's own decision. */
    readonly lookup: UpstreamLookup,
    /** The dial of those addresses, or null when the decision did not let it start. */
    private readonly dialed: Promise<DialedUpstream | DialFailure | null>,
    /** The upstream's bytes go here (the tunnel's Downstream, which the dial was made with). */
    readonly downstream: Downstream,
  ) {}

  /** Its outcome, for the caller whose decision allowed the same tunnel (once). */
  take(): Promise<DialedUpstream | DialFailure | null> {
    this.taken = true;
    return this.dialed;
  }

  /** Not wanted after all: the socket, when it answers, is closed unused. */
  drop(): void {
    if (this.taken) return;
    this.taken = true;
    void this.dialed.then((result) => {
      if (result && 'socket' in result) result.socket.destroy();
    });
  }
}
