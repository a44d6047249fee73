// The one place an allowed inspected request passes, whole, on its way upstream: method, URL,
// authority, path, header fields and body, after the decision and before any byte is sent. Whatever must change
// in a request before it leaves changes here, for HTTP/1.1, HTTP/2 and WebSocket alike: the
// credential placeholders the sandbox holds become the values where the request's decision
// binds them (headers and URL query; the body only with `credentials_in_body`), and a
// placeholder bound nowhere for this request refuses it (credential_not_bound, audited by
// name) before anything of it is sent. The path was decided: it must not change.
import { Readable } from 'node:stream';
import { boundCredentials, swapBody, swapRequest, type Header } from '../../credentials/swap.js';
import type { Refusal } from '../answers.js';
import { auditMisuse, type Misuse } from '../credential-guard.js';
import { MAX_CREDENTIAL_BODY } from '../paths/forward.js';
import type { InspectedConnection } from './connection.js';
import type { RequestVerdict } from './decide.js';

export type OutgoingHeaders = Record<string, string | string[]>;

export interface OutgoingRequest {
  method: string;
  /** `host[:port]` as sent upstream (Host, `:authority`): the connection's host. */
  authority: string;
  /** The canonical path with its query, as decided. */
  path: string;
  /** Field names lower case; no pseudo-headers, no hop-by-hop fields, no Host. */
  headers: OutgoingHeaders;
  /** The request body as the client sends it (empty for a request without one). */
  body: Readable;
  /** The body's length: declared (or read whole here), 'chunked' when not known ahead, null: no body. */
  length: number | 'chunked' | null;
}

export type Rewritten = { ok: true; request: OutgoingRequest } | { ok: false; refusal: Refusal; error: string };

type AllowedVerdict = RequestVerdict & { ok: true };

/**
 * The request as it goes upstream: placeholders of the credentials `verdict`'s decision binds
 * over inspected TLS swapped for their values; any other placeholder refuses it (audited as
 * `credential_misuse`, answered on this request alone by the caller).
 */
export async function rewriteOutgoing(conn: InspectedConnection, verdict: AllowedVerdict, request: OutgoingRequest): Promise<Rewritten> {
  const table = conn.p.credentials.table;
  if (table.byPlaceholder.size === 0) return { ok: true, request };
  const bound = boundCredentials(verdict.decision, 'inspected');
  const swapped = swapRequest({ headers: headerList(request.headers), target: request.path }, bound.headers, table);
  if (!swapped.ok) return misused(conn, verdict, { credentials: swapped.misused, where: swapped.where });
  const rewritten = { ...request, path: swapped.target, headers: headerRecord(swapped.headers) };
  if (bound.body.length === 0 || request.length === null) return { ok: true, request: rewritten };
  return withBodySwapped(conn, verdict, rewritten, bound.body);
}

function misused(conn: InspectedConnection, verdict: AllowedVerdict, misuse: Misuse): Rewritten {
  const { kind, identity } = conn.tracked;
  const refusal = auditMisuse(conn.p, kind, conn.peer, identity, verdict.facts, misuse, verdict.decision.policy);
  return { ok: false, refusal, error: 'credential_not_bound' };
}

/**
 * A body that may carry credentials is read whole first (at most MAX_CREDENTIAL_BODY bytes,
 * whatever its framing: the parser has de-chunked it, so a chunked or length-less HTTP/2 body
 * is read up to the bound too), swapped, and sent with its new Content-Length.
 */
async function withBodySwapped(conn: InspectedConnection, verdict: AllowedVerdict, request: OutgoingRequest, bound: string[]): Promise<Rewritten> {
  const { identity, facts } = conn.tracked;
  const refuse = (kind: 'body_too_large' | 'bad_request', detail: string): Rewritten => {
    conn.p.countRefusal();
    return { ok: false, error: kind, refusal: { kind, detail, policy: verdict.decision.policy, binary: identity.path, host: facts.host, port: facts.port } };
  };
  const tooLarge = `this endpoint swaps credential placeholders in request bodies of at most ${MAX_CREDENTIAL_BODY} bytes`;
  if (typeof request.length === 'number' && request.length > MAX_CREDENTIAL_BODY) return refuse('body_too_large', `${tooLarge}; this one declares ${request.length}`);
  const read = await readBounded(request.body, MAX_CREDENTIAL_BODY, conn.p.limits.idleTimeoutMs);
  if (read === 'too_large') return refuse('body_too_large', `${tooLarge}; this one is longer`);
  if (read === null) return refuse('bad_request', 'the request body did not arrive whole');
  const swapped = swapBody(read, bound, conn.p.credentials.table);
  if (!swapped.ok) return misused(conn, verdict, { credentials: swapped.misused, where: 'the request body' });
  const headers = { ...request.headers, 'content-length': String(swapped.body.length) };
  return { ok: true, request: { ...request, headers, body: Readable.from([swapped.body]), length: swapped.body.length } };
}

/** The whole of `body`, or 'too_large' past `limit` bytes, or null on error, early close or timeout. */
function readBounded(body: Readable, limit: number, timeoutMs: number): Promise<Buffer | 'too_large' | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const finish = (result: Buffer | 'too_large' | null): void => {
      clearTimeout(timer);
      body.off('data', onData).off('end', onEnd).off('error', onFail).off('close', onFail);
      // Refused: the rest of the body is read and dropped, so the client is not left blocked
      // on flow control (HTTP/2) while the refusal is answered.
      if (result === 'too_large' || result === null) body.resume();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      have += chunk.length;
      if (have > limit) return finish('too_large');
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(Buffer.concat(chunks));
    const onFail = (): void => finish(null);
    const timer = setTimeout(onFail, timeoutMs);
    body.on('data', onData).once('end', onEnd).once('error', onFail).once('close', onFail);
  });
}

/** Header fields as a list (a repeated field once per value), and back. */
function headerList(headers: OutgoingHeaders): Header[] {
  const list: Header[] = [];
  for (const [name, value] of Object.entries(headers)) for (const v of Array.isArray(value) ? value : [value]) list.push({ name, value: v });
  return list;
}

function headerRecord(list: readonly Header[]): OutgoingHeaders {
  const out: OutgoingHeaders = {};
  for (const { name, value } of list) {
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else out[name] = Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return out;
}

// Fields that belong to one hop (RFC 9110 §7.6.1) or to the framing this proxy redoes; Host is
// set from the decided authority.
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/**
 * The end-to-end header fields of a request or response given as [name, value, ...] (Node's
 * rawHeaders, or HTTP/2 headers flattened): hop-by-hop fields, those `Connection` names and
 * pseudo-headers dropped; `te: trailers` kept when `keepTe` (gRPC needs it end to end).
 */
export function endToEndHeaders(raw: readonly string[], keepTe = false): OutgoingHeaders {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const n of raw[i + 1]!.split(',')) named.add(n.trim().toLowerCase());
  }
  const out: OutgoingHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name.startsWith(':') || named.has(name)) continue;
    if (HOP_BY_HOP.has(name) && !(keepTe && name === 'te' && value.trim().toLowerCase() === 'trailers')) continue;
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else out[name] = Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return out;
}

/** HTTP/2 headers (an object) as [name, value, ...]. */
export function flattenHeaders(headers: Record<string, string | string[] | number | undefined>): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push(name, String(v));
  }
  return out;
}
