// The listen port's HTTP: reads one request head, then hands the connection to the path its
// method names: CONNECT (connect.ts) or a forward request in absolute form (forward.ts).
import type net from 'node:net';
import { refuseHttp } from '../answers.js';
import { peerOf } from '../caller.js';
import { RequestHeadReader, type RequestHead } from '../http-head.js';
import type { Pipeline } from '../pipeline.js';
import { readHead } from '../read-head.js';
import { connect } from './connect.js';
import { forward } from './forward.js';

/** What a request path does with a complete head and the bytes that came after it. */
type RequestPath = (p: Pipeline, client: net.Socket, head: RequestHead, rest: Buffer) => Promise<void>;

/** Reads the request head (`first` are bytes the listener already read) by `deadline`. */
export function acceptHttpRequest(p: Pipeline, client: net.Socket, first: Buffer, deadline: number): void {
  const reader = new RequestHeadReader(p.limits.maxHeaderBytes);
  readHead(
    client,
    reader,
    deadline,
    () => headTimedOut(p, client),
    (parsed) => {
      if (parsed.status === 'error') {
        const kind = parsed.code === 431 ? 'headers_too_large' : 'bad_request';
        p.error({ kind: 'error', error: kind, detail: parsed.message, client: peerOf(client) });
        refuseHttp(client, { kind: parsed.code === 501 ? 'not_implemented' : kind, detail: parsed.message });
        return;
      }
      const path: RequestPath = parsed.head.method === 'CONNECT' ? connect : forward;
      path(p, client, parsed.head, reader.received().subarray(parsed.length)).catch((err: unknown) => {
        p.error({ kind: 'error', error: 'internal', detail: (err as Error).message });
        client.destroy();
      });
    },
    first,
  );
}

/** No complete request head in time (slowloris): 408. */
export function headTimedOut(p: Pipeline, client: net.Socket): void {
  p.error({ kind: 'error', error: 'header_timeout', client: peerOf(client) });
  refuseHttp(client, { kind: 'header_timeout', detail: `the request head did not arrive within ${p.limits.headerTimeoutMs} ms` });
}
