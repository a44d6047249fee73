// An HTTP/1.1 upgrade (WebSocket) on an inspected connection: the upgrade request is decided
// like any request (method, path, Host). Allowed, it goes upstream with its Upgrade fields; only
// a `101` from the upstream turns the connection into a byte relay both ways. Any other answer
// is passed back and the connection closed, so no second request rides undecided on a relay.
import type http from 'node:http';
import type net from 'node:net';
import type { Refusal } from '../answers.js';
import { errorResponse } from '../responses.js';
import { authorityOf, type InspectedConnection } from './connection.js';
import { decideRequest, type RequestAsked, type RequestVerdict } from './decide.js';
import { h1Exchange } from './h1-upstream.js';
import { endToEndHeaders, rewriteOutgoing, type OutgoingRequest } from './outgoing.js';
import { recordRequest, type RequestRecord } from './request-audit.js';
import { upstreamRefusal } from './refuse.js';

function responseHead(status: number, message: string | undefined, raw: readonly string[], close: boolean): string {
  let text = `HTTP/1.1 ${status} ${message ?? ''}\r\n`;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    // Closing after it: the body is delimited by the close (Node has already de-chunked it).
    if (close && (name === 'connection' || name === 'keep-alive' || name === 'transfer-encoding')) continue;
    text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return `${text}${close ? 'Connection: close\r\n' : ''}\r\n`;
}

export function serveUpgrade(conn: InspectedConnection, req: http.IncomingMessage, client: net.Socket, head: Buffer, asked: RequestAsked): void {
  const verdict = decideRequest(conn, asked);
  const { record, done } = recordRequest(conn, verdict);
  client.once('close', done);
  client.on('error', () => client.destroy());
  const refuse = (refusal: Refusal): void => {
    record.status = Number(errorResponse(refusal).toString('latin1', 9, 12));
    client.end(errorResponse(refusal));
  };
  if (!verdict.ok) return refuse(verdict.refusal);
  const headers = endToEndHeaders(req.rawHeaders);
  void rewriteOutgoing(conn, verdict, { method: verdict.facts.method, authority: authorityOf(conn), path: verdict.facts.path, headers, body: req, length: null }).then((out) => {
    if (client.destroyed) return;
    if (!out.ok) {
      record.error = out.error;
      return refuse(out.refusal);
    }
    upgradeUpstream(conn, req, client, head, out.request, verdict, record, refuse);
  });
}

function upgradeUpstream(conn: InspectedConnection, req: http.IncomingMessage, client: net.Socket, head: Buffer, out: OutgoingRequest, verdict: RequestVerdict & { ok: true }, record: RequestRecord, refuse: (refusal: Refusal) => void): void {
  const abandon = h1Exchange(
    conn,
    out,
    record,
    {
      upgrade(answer: http.IncomingMessage, socket: net.Socket, upHead: Buffer) {
        record.status = 101;
        client.write(responseHead(101, answer.statusMessage, answer.rawHeaders, false));
        relay(client, socket, head, upHead, record);
      },
      response(answer: http.IncomingMessage) {
        record.status = answer.statusCode ?? 0;
        client.write(responseHead(record.status, answer.statusMessage, answer.rawHeaders, true));
        answer.pipe(client);
      },
      error(err) {
        refuse(upstreamRefusal(conn, err, verdict.decision.policy, record));
      },
    },
    { connection: 'Upgrade', upgrade: req.headers.upgrade ?? '' },
  );
  client.once('close', abandon);
}

function relay(client: net.Socket, upstream: net.Socket, clientHead: Buffer, upstreamHead: Buffer, record: RequestRecord): void {
  if (upstreamHead.length > 0) client.write(upstreamHead);
  if (clientHead.length > 0) upstream.write(clientHead);
  record.bytesUp += clientHead.length;
  record.bytesDown += upstreamHead.length;
  client.on('data', (chunk: Buffer) => (record.bytesUp += chunk.length));
  upstream.on('data', (chunk: Buffer) => (record.bytesDown += chunk.length));
  client.pipe(upstream);
  upstream.pipe(client);
  upstream.on('error', () => client.destroy());
  upstream.once('close', () => client.destroy());
  client.once('close', () => upstream.destroy());
}
