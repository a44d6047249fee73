// A refused request on an inspected connection, answered on that request only: the JSON body
// every refusal carries, as an HTTP/1.1 response (the connection goes on when its framing
// allows) or on one HTTP/2 stream (the other streams go on).
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Refusal } from '../answers.js';
import { errorAnswer } from '../responses.js';
import type { InspectedConnection } from './connection.js';
import type { RequestRecord } from './request-audit.js';
import { asFailure } from './upstream.js';

function headersOf(json: string, decision: string): Record<string, string> {
  return { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)), 'x-portcullis-decision': decision };
}

export function refuseOnResponse(res: http.ServerResponse, refusal: Refusal, record: RequestRecord): void {
  const answer = errorAnswer(refusal);
  record.status = answer.status;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(answer.status, answer.statusText, headersOf(answer.json, answer.decision));
  res.end(answer.json);
}

export function refuseOnStream(stream: http2.ServerHttp2Stream, refusal: Refusal, record: RequestRecord): void {
  const answer = errorAnswer(refusal);
  record.status = answer.status;
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(0x2); // INTERNAL_ERROR: the response had begun
    return;
  }
  stream.respond({ ':status': answer.status, ...headersOf(answer.json, answer.decision) });
  stream.end(answer.json);
}

/** What the client is told when its request cannot reach the upstream; the request's record says why. */
export function upstreamRefusal(conn: InspectedConnection, err: unknown, policy: string | null, record: RequestRecord): Refusal {
  const failure = asFailure(err, conn.tracked.facts.host);
  record.error = failure.kind;
  record.errorDetail = failure.message;
  if (failure.code !== undefined) record.tlsCode = failure.code;
  const { identity, facts } = conn.tracked;
  return { kind: failure.kind, detail: failure.message, policy, binary: identity.path, host: facts.host, port: facts.port };
}
