// Strict parser for an HTTP/1.x request head (request line + header fields), as a proxy sees
// it: CONNECT authority-form or absolute-form targets. Pure (no I/O): fed chunks as they arrive.
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

const CR = 13;
const LF = 10;

/**
 * Reads a request head from chunks as they arrive. Each byte is looked at once (for the end of
 * the head and for line endings that are not CRLF), and the head is parsed once, when complete:
 * a head dribbled a byte at a time costs what it costs in one piece.
 */
export class RequestHeadReader {
  /** Bytes looked at, and heads parsed: the work done, which must stay linear in the input. */
  scanned = 0;
  parses = 0;
  private readonly chunks: Buffer[] = [];
  private total = 0;
  private previous = -1;
  /** How much of CR LF CR LF the bytes so far end with. */
  private matched = 0;
  /** Where the first line ending that is not CRLF is, or -1. */
  private badLineEnd = -1;
  private whole: Buffer | null = null;

  constructor(private readonly maxBytes: number) {}

  feed(chunk: Buffer): HeadParse {
    const base = this.total;
    this.chunks.push(chunk);
    this.total += chunk.length;
    this.whole = null;
    const end = this.scan(chunk, base);
    if (end === -1) {
      if (this.total > this.maxBytes) return { status: 'error', code: 431, message: `request head larger than ${this.maxBytes} bytes` };
      // A bare LF would never be followed by CRLFCRLF; fail early instead of waiting for the limit.
      if (this.badLineEnd !== -1) return bad('line endings must be CRLF');
      return { status: 'incomplete' };
    }
    if (this.badLineEnd !== -1) return bad('line endings must be CRLF');
    this.parses++;
    return parseHeadLines(this.received().toString('latin1', 0, end), end + 4);
  }

  /** Everything received so far: the head and whatever came after it. */
  received(): Buffer {
    this.whole ??= this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    return this.whole;
  }

  /** Scans the new bytes (up to the size limit); returns where CR LF CR LF starts, or -1. */
  private scan(chunk: Buffer, base: number): number {
    const stop = Math.max(0, Math.min(chunk.length, this.maxBytes - base));
    let { previous, matched } = this;
    for (let i = 0; i < stop; i++) {
      const byte = chunk[i]!;
      if (byte === LF) {
        if (previous !== CR && this.badLineEnd === -1) this.badLineEnd = base + i;
        matched = matched === 1 || matched === 3 ? matched + 1 : 0;
        if (matched === 4) {
          this.scanned += i + 1;
          return base + i - 3;
        }
      } else {
        // A CR must always be followed by LF.
        if (previous === CR && this.badLineEnd === -1) this.badLineEnd = base + i - 1;
        matched = byte === CR ? (matched === 2 ? 3 : 1) : 0;
      }
      previous = byte;
    }
    this.scanned += stop;
    this.previous = previous;
    this.matched = matched;
    return -1;
  }
}

/** Parses a complete head held in a buffer of its own (pure; one call does all the work). */
export function parseRequestHead(buffer: Buffer, maxBytes: number): HeadParse {
  return new RequestHeadReader(maxBytes).feed(buffer);
}

/** The request line and header fields of a complete head (`text`, without its final CRLFCRLF). */
function parseHeadLines(text: string, length: number): HeadParse {
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

/** All values of a header, case-insensitively. */
export function headerValues(head: RequestHead, name: string): string[] {
  const lower = name.toLowerCase();
  return head.headers.filter((h) => h.name.toLowerCase() === lower).map((h) => h.value);
}

export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'error'; code: 400 | 411 | 501; message: string };

/** The field names a request lists in `Connection` (lower case): those that end at this hop. */
export function connectionOptions(head: RequestHead): Set<string> {
  return new Set(headerValues(head, 'connection').flatMap((v) => v.split(',').map((s) => s.trim().toLowerCase())));
}

const FRAMING_FIELDS = ['content-length', 'transfer-encoding'];

/** How the request body is delimited (RFC 9112 §6). */
export function requestBodyFraming(head: RequestHead): BodyFraming {
  // A framing field dropped at this hop would leave the next one reading the body by other
  // rules than the proxy did: what the proxy saw as a body could be a second request there.
  const options = connectionOptions(head);
  const named = FRAMING_FIELDS.find((field) => options.has(field));
  if (named !== undefined) return { kind: 'error', code: 400, message: `Connection must not name ${named}: framing headers (Content-Length, Transfer-Encoding) are never hop-by-hop` };
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
