// The messages of srt-proxy's decider protocol (version 1), read strictly and written so that
// srt-proxy's own strict reader accepts them. Pure.
//
//   proxy → decider  {"t":"hello","proto":1}
//   decider → proxy  {"t":"hello","proto":1,"allowedDomains":[…],"deniedDomains":[…]}
//   proxy → decider  {"t":"req","id","method","host","port","hostHeader"?,"sni"?,"path","query"?,"headers"?}
//   decider → proxy  {"t":"verdict","id","action":"allow"} | {…,"action":"deny","status","reason"?}
import { FrameError } from './frames.js';

export const DECIDER_PROTO = 1;
/** srt-proxy refuses a deny reason longer than this (UTF-8 bytes). */
const MAX_REASON_BYTES = 1024;

export interface DeciderRequest {
  id: number;
  method: string;
  host: string;
  port: number;
  path: string;
  query?: string;
  hostHeader?: string;
  sni?: string;
  headers?: Record<string, string[]>;
}

export type ProxyMessage = { t: 'hello' } | ({ t: 'req' } & DeciderRequest);

const REQ_FIELDS = new Set(['t', 'id', 'method', 'host', 'port', 'hostHeader', 'sni', 'path', 'query', 'headers']);

function fail(message: string): never {
  throw new FrameError(message);
}

function text(value: unknown, field: string, optional = false): string | undefined {
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string' || value === '') fail(`"${field}" must be a non-empty string`);
  return value;
}

function headerMap(value: unknown): Record<string, string[]> | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('"headers" must be an object');
  const out: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(value)) {
    if (!Array.isArray(values) || !values.every((v) => typeof v === 'string')) fail(`header "${name}" must be a list of strings`);
    out[name] = values as string[];
  }
  return out;
}

/** One frame's message; throws FrameError for anything the protocol does not have. */
export function parseProxyMessage(frame: Buffer): ProxyMessage {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame));
  } catch (err) {
    fail(`frame is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('frame is not one JSON object');
  const m = value as Record<string, unknown>;
  if (m.t === 'hello') {
    if (m.proto !== DECIDER_PROTO || Object.keys(m).length !== 2) fail(`unsupported hello (proto ${JSON.stringify(m.proto)})`);
    return { t: 'hello' };
  }
  if (m.t !== 'req') fail(`unexpected message ${JSON.stringify(m.t)} (this decider never asks for a body)`);
  for (const key of Object.keys(m)) if (!REQ_FIELDS.has(key)) fail(`req has an unknown field "${key}"`);
  if (!Number.isSafeInteger(m.id) || (m.id as number) < 1) fail('req "id" must be a positive integer');
  if (!Number.isInteger(m.port) || (m.port as number) < 1 || (m.port as number) > 65535) fail('req "port" must be 1-65535');
  const req: { t: 'req' } & DeciderRequest = {
    t: 'req',
    id: m.id as number,
    method: text(m.method, 'method')!,
    host: text(m.host, 'host')!,
    port: m.port as number,
    path: text(m.path, 'path')!,
  };
  const optional = { query: text(m.query, 'query', true), hostHeader: text(m.hostHeader, 'hostHeader', true), sni: text(m.sni, 'sni', true) };
  for (const [key, v] of Object.entries(optional)) if (v !== undefined) (req as unknown as Record<string, unknown>)[key] = v;
  const headers = headerMap(m.headers);
  if (headers !== undefined) req.headers = headers;
  return req;
}

export function helloMessage(allowedDomains: string[], deniedDomains: string[]): Record<string, unknown> {
  return { t: 'hello', proto: DECIDER_PROTO, allowedDomains, deniedDomains };
}

export function allowVerdict(id: number): Record<string, unknown> {
  return { t: 'verdict', id, action: 'allow' };
}

/** A reason srt-proxy accepts: no control characters, at most 1 KiB of UTF-8, cut by code point. */
export function verdictReason(reason: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = reason.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g, ' ').trim() || 'denied by policy';
  if (Buffer.byteLength(clean) <= MAX_REASON_BYTES) return clean;
  let out = '';
  let bytes = Buffer.byteLength('…');
  for (const point of clean) {
    bytes += Buffer.byteLength(point);
    if (bytes > MAX_REASON_BYTES) break;
    out += point;
  }
  return `${out}…`;
}

export function denyVerdict(id: number, status: number, reason: string): Record<string, unknown> {
  return { t: 'verdict', id, action: 'deny', status, reason: verdictReason(reason) };
}
