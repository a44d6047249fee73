// The messages between the primary of `portcullis proxy --workers N` and its workers, over the
// IPC channel cluster gives each worker. Pure. Both ends are this program, so a message is
// recognised by its kind; anything else on the channel (cluster's own messages never reach
// 'message' listeners) is ignored.
import type { HostPort } from '../proxy/server.js';

/** Set in a worker's environment by the primary: the worker's number, from 1. */
export const WORKER_ENV = 'PORTCULLIS_PROXY_WORKER';

/** Where a worker listens, and what it needs that the command line cannot carry. */
export interface WorkerStart {
  kind: 'start';
  /** Hex: what every worker makes the credentials' placeholders from (they must agree). */
  placeholderSeed: string;
  listen: HostPort;
  sniListen?: HostPort;
}

export type ToWorker = WorkerStart | { kind: 'reload'; id: number } | { kind: 'reopen' } | { kind: 'stop' };

export interface WorkerListening {
  kind: 'listening';
  address: HostPort;
  sniAddress?: HostPort;
}

export interface WorkerReloaded {
  kind: 'reloaded';
  id: number;
  ok: boolean;
  error?: string;
  /** Open tunnels the new policy denies, closed by this worker. */
  closed: number;
}

/** `ready`: the worker listens for messages now and asks for its start. */
export type FromWorker = { kind: 'ready' } | WorkerListening | WorkerReloaded;

const TO_WORKER = new Set(['start', 'reload', 'reopen', 'stop']);
const FROM_WORKER = new Set(['ready', 'listening', 'reloaded']);

function kindOf(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const kind = (message as { kind?: unknown }).kind;
  return typeof kind === 'string' ? kind : undefined;
}

export function asToWorker(message: unknown): ToWorker | null {
  return TO_WORKER.has(kindOf(message) ?? '') ? (message as ToWorker) : null;
}

export function asFromWorker(message: unknown): FromWorker | null {
  return FROM_WORKER.has(kindOf(message) ?? '') ? (message as FromWorker) : null;
}
