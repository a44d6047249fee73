// Strict parser for an HTTP/1.x request head (request line + header fields), as a proxy sees
// it: CONNECT authority-form or absolute-form targets. Pure; fed the bytes received so far.
// Anything ambiguous (bare LF, obs-fold, whitespace before a colon, control characters,
// conflicting lengths) is refused, because a proxy and an upstream that disagree on framing
// is how requests get smuggled.

export interface HeaderField {
  name: string;
  value: string;
}

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  headers: HeaderField[];
}

export type HeadParse =
  | { status: 'incomplete' }
  | { status: 'error'; code: 400 | 431 | 501; message: string }
  | { status: 'ok'; head: RequestHead; length: number };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Visible ASCII and obs-text in the target; no spaces, no controls.
const TARGET = /^[\x21-\x7e]+$/;
// Field values: visible characters, SP and HTAB inside, obs-text allowed.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const MAX_HEADERS = 100;

const CRLFCRLF = Buffer.from('\r\n\r\n');

export function parseRequestHead(buffer: Buffer, maxBytes: number): HeadParse {
  const end = buffer.indexOf(CRLFCRLF);
  if (end === -1) {
    if (buffer.length > maxBytes) return { status: 'error', code: 431, message: `request head larger than ${maxBytes} bytes` };
    // A bare LF would never be followed by CRLFCRLF; fail early instead of waiting for the limit.
    if (hasBareLf(buffer, buffer.length)) return { status: 'error', code: 400, message: 'line endings must be CRLF' };
    return { status: 'incomplete' };
  }
  const length = end + 4;
  if (length > maxBytes) return { status: 'error', code: 431, message: `request head larger than ${maxBytes} bytes` };
  if (hasBareLf(buffer, end)) return { status: 'error', code: 400, message: 'line endings must be CRLF' };
  const text = buffer.toString('latin1', 0, end);
  const lines = text.split('\r\n');
  const requestLine = lines[0] ?? '';
  const parts = requestLine.split(' ');
  if (parts.length !== 3) return bad('request line must be "METHOD target HTTP/1.1"');
  const [method = '', target = '', protocol = ''] = parts;
  if (!TOKEN.test(method)) return bad('invalid method');
  if (!TARGET.test(target)) return bad('invalid request target');
  if (protocol !== 'HTTP/1.1' && protocol !== 'HTTP/1.0') {
    return /^HTTP\/\d\.\d$/.test(protocol) ? { status: 'error', code: 501, message: `${protocol} is not supported` } : bad('invalid protocol version');
  }
  const headers: HeaderField[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '') return bad('empty header line');
    if (line[0] === ' ' || line[0] === '\t') return bad('folded header lines are not accepted');
    const colon = line.indexOf(':');
    if (colon <= 0) return bad('header line without a name');
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return bad(`invalid header name`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return bad(`invalid characters in header ${name}`);
    headers.push({ name, value });
    if (headers.length > MAX_HEADERS) return { status: 'error', code: 431, message: `more than ${MAX_HEADERS} header fields` };
  }
  return { status: 'ok', head: { method, target, version: protocol === 'HTTP/1.0' ? '1.0' : '1.1', headers }, length };
}

function bad(message: string): HeadParse {
  return { status: 'error', code: 400, message };
}

function hasBareLf(buffer: Buffer, end: number): boolean {
  let at = buffer.indexOf(10);
  while (at !== -1 && at < end) {
    if (at === 0 || buffer[at - 1] !== 13) return true;
    at = buffer.indexOf(10, at + 1);
  }
  // A CR must always be followed by LF.
  let cr = buffer.indexOf(13);
  while (cr !== -1 && cr < end) {
    if (cr + 1 < buffer.length && buffer[cr + 1] !== 10) return true;
    cr = buffer.indexOf(13, cr + 1);
  }
  return false;
}

/** All values of a header, case-insensitively. */
export function headerValues(head: RequestHead, name: string): string[] {
  const lower = name.toLowerCase();
  return head.headers.filter((h) => h.name.toLowerCase() === lower).map((h) => h.value);
}

export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'error'; code: 400 | 411 | 501; message: string };

/** How the request body is delimited (RFC 9112 §6). */
export function requestBodyFraming(head: RequestHead): BodyFraming {
  const te = headerValues(head, 'transfer-encoding');
  const cl = headerValues(head, 'content-length');
  if (te.length > 0 && cl.length > 0) return { kind: 'error', code: 400, message: 'both Transfer-Encoding and Content-Length given' };
  if (te.length > 0) {
    const codings = te.join(',').split(',').map((s) => s.trim().toLowerCase());
    if (codings.length === 1 && codings[0] === 'chunked') return { kind: 'chunked' };
    return { kind: 'error', code: 501, message: 'only "Transfer-Encoding: chunked" is supported' };
  }
  if (cl.length > 0) {
    const values = new Set(cl.join(',').split(',').map((s) => s.trim()));
    if (values.size !== 1) return { kind: 'error', code: 400, message: 'conflicting Content-Length values' };
    const [value = ''] = [...values];
    if (!/^\d{1,15}$/.test(value)) return { kind: 'error', code: 400, message: 'invalid Content-Length' };
    return { kind: 'length', length: Number(value) };
  }
  return { kind: 'none' };
}
export { TOKEN, FIELD_VALUE };
