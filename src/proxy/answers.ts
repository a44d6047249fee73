// How a path tells its client no. Each path answers in its own protocol: over HTTP (CONNECT,
// forward) a JSON error the client (or an agent) can read; on the SNI listener, where no TLS
// session exists to carry a message, a close. A new path brings its own form (SOCKS5: a reply
// code) and hands it to the pipeline, which calls it for every refusal on that path.
import type net from 'node:net';
import { errorResponse, type DenialFacts } from './responses.js';

export type Refusal = DenialFacts;
export type Refuse = (client: net.Socket, refusal: Refusal) => void;

/** An HTTP error response, then close (a client that keeps its side open is cut after 5 s). */
export const refuseHttp: Refuse = (client, refusal) => {
  if (client.writable) client.end(errorResponse(refusal));
  client.setTimeout(5_000, () => client.destroy());
};

/** A connection that carries no message: just closed. */
export const refuseByClosing: Refuse = (client) => {
  client.destroy();
};
