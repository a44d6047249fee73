// The one place an allowed inspected request passes, whole, on its way upstream: method, URL,
// authority, path, header fields and body, after the decision and before any byte is sent. Whatever must change
// in a request before it leaves (credentials the sandbox only holds as placeholders) changes
// here, for HTTP/1.1, HTTP/2 and WebSocket alike. The path was decided: it must not change.
import type { Readable } from 'node:stream';
import type { InspectedConnection } from './connection.js';

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
}

/** The request as it goes upstream. Today: as the client sent it. */
export function rewriteOutgoing(_conn: InspectedConnection, request: OutgoingRequest): OutgoingRequest {
  return request;
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
