// Who is calling: the process behind a client connection (looked up by its socket tuple), and
// what every audit event says about it.
import type net from 'node:net';
import type { AuditEvent } from '../audit/events.js';
import type { ConnectionTuple, ProcessIdentity, ResolveOptions } from '../identity/types.js';
import { UNRESOLVED } from '../policy/types.js';

export interface IdentitySource {
  resolve(tuple: ConnectionTuple, options?: ResolveOptions): Promise<ProcessIdentity>;
  /** The connection asked about has closed (a hint for the next lookup; optional). */
  released?(tuple: ConnectionTuple, options?: ResolveOptions): void;
  /** Prepares for the first lookup; called once when the proxy is listening (optional). */
  warm?(): Promise<void>;
}

/** The identity behind `client`; a failed lookup is the unresolved sentinel, never a throw. */
export function lookUpCaller(source: IdentitySource, client: net.Socket, redirected: boolean, anchorPid: number | undefined): Promise<ProcessIdentity> {
  const tuple: ConnectionTuple = {
    clientAddress: client.remoteAddress ?? '',
    clientPort: client.remotePort ?? 0,
    proxyAddress: client.localAddress ?? '',
    proxyPort: client.localPort ?? 0,
  };
  const options: ResolveOptions = { redirected };
  if (anchorPid !== undefined) options.anchorPid = anchorPid;
  if (source.released) {
    // The client's FIN usually means it has closed its fd: say so at once, its next socket may
    // be on its way (at the latest, on close).
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      source.released?.(tuple, options);
    };
    client.once('end', release);
    client.once('close', release);
  }
  return source.resolve(tuple, options).catch((err: unknown) => unresolvedIdentity(`identity lookup failed: ${(err as Error).message}`));
}

/** A caller not known (yet): what the policy says to a caller it cannot name. */
export const UNKNOWN_CALLER: Readonly<ProcessIdentity> = Object.freeze({ path: UNRESOLVED, pid: null, ancestors: [], cmdline: [], sha256: null });

function unresolvedIdentity(detail: string): ProcessIdentity {
  return { path: UNRESOLVED, pid: null, ancestors: [], cmdline: [], sha256: null, unresolved_reason: 'no_socket_row', unresolved_detail: detail };
}

/** What every audit event says about the caller. */
export function callerFields(identity: ProcessIdentity): Partial<AuditEvent> {
  const out: Partial<AuditEvent> = {};
  writeCallerFields(out, identity);
  return out;
}

/** Writes the caller fields into an event being built (no object in between, none to copy). */
export function writeCallerFields(out: Partial<AuditEvent>, identity: ProcessIdentity): void {
  out.binary = identity.path;
  out.pid = identity.pid;
  out.ancestors = identity.ancestors.map((a) => a.path);
  if (identity.unresolved_reason !== undefined) {
    out.unresolved_reason = identity.unresolved_reason;
    if (identity.unresolved_detail !== undefined) out.unresolved_detail = identity.unresolved_detail;
  }
  if (identity.integrity_violation !== undefined) out.integrity_violation = identity.integrity_violation;
  if (identity.original_destination !== undefined) out.original_destination = identity.original_destination;
}

/** `address:port` of the client, as audit events name it. */
export function peerOf(client: net.Socket): string {
  return `${client.remoteAddress ?? ''}:${client.remotePort ?? 0}`;
}
