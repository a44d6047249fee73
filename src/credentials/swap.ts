// The swap: placeholders in an outgoing request become values, where the decision binds them,
// and anywhere else are refused. Pure: the request's parts and the decision's credential names
// in, the rewritten parts (or the names of the misused credentials) out. Every path that sends
// a request upstream (plain HTTP forward, inspected HTTPS) calls this one module.
import { PLACEHOLDER_PREFIX } from './placeholder.js';
import type { Secret } from './secret.js';

/** Placeholder → the credential it stands for (a CredentialStore's snapshot). */
export interface SwapTable {
  byPlaceholder: ReadonlyMap<string, { name: string; value: Secret }>;
}

export interface Header {
  name: string;
  value: string;
}

/** An outgoing request's parts that may carry placeholders. */
export interface OutgoingRequest {
  headers: Header[];
  /** Origin-form target: path, then `?query`. */
  target: string;
}

export type SwapOutcome =
  | { ok: true; headers: Header[]; target: string; swapped: string[] }
  | { ok: false; misused: string[]; where: string };

/** The credential fields of a policy decision (names only). */
export interface CredentialBinding {
  credentials?: string[];
  cleartext_credentials?: string[];
  body_credentials?: string[];
}

/**
 * What a request allowed by `decision` may carry, by transport: inspected HTTPS swaps every bound
 * credential; plain HTTP only those its endpoints allow in clear text. Bodies: of those, the ones
 * allowed in bodies (credentials_in_body). The decision (the Rego) names them; nothing else does.
 */
export function boundCredentials(decision: CredentialBinding, transport: 'inspected' | 'plain'): { headers: string[]; body: string[] } {
  const headers = transport === 'inspected' ? (decision.credentials ?? []) : (decision.cleartext_credentials ?? []);
  const allowed = new Set(headers);
  return { headers, body: (decision.body_credentials ?? []).filter((name) => allowed.has(name)) };
}

export type BodySwapOutcome = { ok: true; body: Buffer; swapped: string[] } | { ok: false; misused: string[] };

const CANDIDATE = /portcullis-cred-[a-z][a-z0-9_]{0,19}-[a-z2-7]{26}/y;
const PREFIX_BYTES = Buffer.from(PLACEHOLDER_PREFIX, 'latin1');

interface Found {
  index: number;
  length: number;
  name: string;
  value: Secret;
}

/** The known placeholders in `text`, in order. */
function findIn(text: string, table: SwapTable): Found[] {
  const found: Found[] = [];
  let at = text.indexOf(PLACEHOLDER_PREFIX);
  while (at !== -1) {
    CANDIDATE.lastIndex = at;
    const match = CANDIDATE.exec(text);
    const known = match ? table.byPlaceholder.get(match[0]) : undefined;
    if (match && known) {
      found.push({ index: at, length: match[0].length, name: known.name, value: known.value });
      at = text.indexOf(PLACEHOLDER_PREFIX, at + match[0].length);
    } else at = text.indexOf(PLACEHOLDER_PREFIX, at + 1);
  }
  return found;
}

/** Names of the credentials whose placeholders occur in `text` (sorted, once each). */
export function placeholdersIn(text: string, table: SwapTable): string[] {
  if (table.byPlaceholder.size === 0 || !text.includes(PLACEHOLDER_PREFIX)) return [];
  return [...new Set(findIn(text, table).map((f) => f.name))].sort();
}

/**
 * Names of the credentials whose placeholders a host name carries (a CONNECT or SNI host, a DNS
 * query name): case-insensitive, and also with the dots taken out, so a placeholder split
 * across labels is seen too. A host never binds a credential: any hit is a misuse.
 */
export function placeholdersInHost(host: string, table: SwapTable): string[] {
  if (table.byPlaceholder.size === 0) return [];
  const lower = host.toLowerCase();
  return [...new Set([...placeholdersIn(lower, table), ...placeholdersIn(lower.replaceAll('.', ''), table)])].sort();
}

type TextSwap = { text: string; swapped: string[]; misused: string[] };

function swapText(text: string, bound: ReadonlySet<string>, table: SwapTable): TextSwap {
  const found = findIn(text, table);
  if (found.length === 0) return { text, swapped: [], misused: [] };
  const misused = found.filter((f) => !bound.has(f.name)).map((f) => f.name);
  if (misused.length > 0) return { text, swapped: [], misused };
  let out = '';
  let last = 0;
  for (const f of found) {
    out += text.slice(last, f.index) + f.value.reveal();
    last = f.index + f.length;
  }
  return { text: out + text.slice(last), swapped: found.map((f) => f.name), misused: [] };
}

function unique(names: string[]): string[] {
  return [...new Set(names)].sort();
}

/**
 * Swaps the placeholders of `bound` credentials in header values and the URL query. A
 * placeholder of any other credential, or one in a header name or the URL path, is a misuse:
 * the whole request is refused and nothing of it may be forwarded.
 */
export function swapRequest(request: OutgoingRequest, bound: readonly string[], table: SwapTable): SwapOutcome {
  if (table.byPlaceholder.size === 0) return { ok: true, headers: request.headers, target: request.target, swapped: [] };
  const allowed = new Set(bound);
  const queryAt = request.target.indexOf('?');
  const path = queryAt === -1 ? request.target : request.target.slice(0, queryAt);
  const inPath = placeholdersIn(path, table);
  if (inPath.length > 0) return { ok: false, misused: inPath, where: 'the URL path' };
  const swapped: string[] = [];
  let target = request.target;
  if (queryAt !== -1) {
    const query = swapText(request.target.slice(queryAt), allowed, table);
    if (query.misused.length > 0) return { ok: false, misused: unique(query.misused), where: 'the URL query' };
    target = path + query.text;
    swapped.push(...query.swapped);
  }
  const headers: Header[] = [];
  for (const header of request.headers) {
    const inName = placeholdersIn(header.name, table);
    if (inName.length > 0) return { ok: false, misused: inName, where: 'a header name' };
    if (!header.value.includes(PLACEHOLDER_PREFIX)) {
      headers.push(header);
      continue;
    }
    const value = swapText(header.value, allowed, table);
    if (value.misused.length > 0) return { ok: false, misused: unique(value.misused), where: `header ${header.name}` };
    headers.push(value.swapped.length > 0 ? { name: header.name, value: value.text } : header);
    swapped.push(...value.swapped);
  }
  return { ok: true, headers, target, swapped: unique(swapped) };
}

/** Longest placeholder: prefix, a 20-character name, a dash, 26 random characters. */
const MAX_PLACEHOLDER = PLACEHOLDER_PREFIX.length + 20 + 1 + 26;

/** The known placeholders in a buffer, found and checked in place (no copy of the whole body). */
function findInBuffer(body: Buffer, table: SwapTable): Found[] {
  const found: Found[] = [];
  let at = body.indexOf(PREFIX_BYTES);
  while (at !== -1) {
    const window = body.toString('latin1', at, Math.min(body.length, at + MAX_PLACEHOLDER));
    CANDIDATE.lastIndex = 0;
    const match = CANDIDATE.exec(window);
    const known = match ? table.byPlaceholder.get(match[0]) : undefined;
    if (match && known) found.push({ index: at, length: match[0].length, name: known.name, value: known.value });
    at = body.indexOf(PREFIX_BYTES, at + (match && known ? match[0].length : 1));
  }
  return found;
}

/**
 * Swaps placeholders in a whole request body (the caller bounds its size). `bound` are the
 * credentials the endpoint lets travel in bodies; any other placeholder is a misuse.
 */
export function swapBody(body: Buffer, bound: readonly string[], table: SwapTable): BodySwapOutcome {
  if (table.byPlaceholder.size === 0 || body.indexOf(PREFIX_BYTES) === -1) return { ok: true, body, swapped: [] };
  const found = findInBuffer(body, table);
  if (found.length === 0) return { ok: true, body, swapped: [] };
  const allowed = new Set(bound);
  const misused = found.filter((f) => !allowed.has(f.name)).map((f) => f.name);
  if (misused.length > 0) return { ok: false, misused: unique(misused) };
  const pieces: Buffer[] = [];
  let last = 0;
  for (const f of found) {
    pieces.push(body.subarray(last, f.index), Buffer.from(f.value.reveal(), 'latin1'));
    last = f.index + f.length;
  }
  pieces.push(body.subarray(last));
  return { ok: true, body: Buffer.concat(pieces), swapped: unique(found.map((f) => f.name)) };
}
