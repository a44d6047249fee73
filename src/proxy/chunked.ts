// Finds where a chunked request body ends (RFC 9112 §7.1), fed the bytes as they arrive, so the
// proxy forwards exactly the body and nothing after it. Pure and incremental; strict about
// CRLF and chunk-size syntax. Chunk sizes are capped well below 2^53, so the count stays exact;
// trailer fields are checked as header fields are, and framing or routing fields are refused
// in a trailer (an upstream that merges trailers into the head must not learn a new length).
import { FIELD_VALUE, TOKEN } from './http-head.js';

type State = 'size' | 'ext' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer-start' | 'trailer' | 'trailer-lf' | 'end-lf' | 'done';

export type ChunkedErrorCode = 'chunk-size' | 'chunk-size-too-large' | 'chunk-extension' | 'line-ending' | 'trailer-field' | 'trailer-too-large';

export type ChunkedFeed = { consumed: number; done: boolean } | { error: string; code: ChunkedErrorCode };

/** Hex digits of a chunk size, leading zeros included. */
export const MAX_SIZE_DIGITS = 16;
/** Largest single chunk: 1 TiB, far below 2^53 so every size is an exact number. */
export const MAX_CHUNK_SIZE = 2 ** 40;
/** Chunk extensions of one size line, and the whole trailer section, at most (as a request head). */
export const MAX_EXTENSION_BYTES = 4096;
export const MAX_TRAILER_BYTES = 16 * 1024;
export const MAX_TRAILER_FIELDS = 100;

// Never allowed in a trailer (RFC 9110 §6.5.1): framing, routing, connection management.
const NOT_IN_TRAILER = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection', 'proxy-authorization']);

function fail(code: ChunkedErrorCode, error: string): ChunkedFeed {
  return { error, code };
}

/** Why a trailer line is not an acceptable header field; null when it is. */
export function trailerFieldProblem(line: string): string | null {
  if (line[0] === ' ' || line[0] === '\t') return 'folded trailer lines are not accepted';
  const colon = line.indexOf(':');
  if (colon <= 0) return 'trailer line without a name';
  const name = line.slice(0, colon);
  if (!TOKEN.test(name)) return 'invalid trailer field name';
  if (NOT_IN_TRAILER.has(name.toLowerCase())) return `${name} is not allowed in a trailer`;
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
  if (!FIELD_VALUE.test(value)) return `invalid characters in trailer field ${name}`;
  return null;
}

export class ChunkedBodyScanner {
  private state: State = 'size';
  private size = 0;
  private digits = 0;
  private extension = 0;
  private left = 0;
  private trailerLine = '';
  private trailerBytes = 0;
  private trailerFields = 0;

  /** Consumes from `buf` up to the end of the body; `consumed` bytes belong to the body. */
  feed(buf: Buffer): ChunkedFeed {
    let i = 0;
    while (i < buf.length && this.state !== 'done') {
      const b = buf[i]!;
      if (this.state === 'data') {
        const take = Math.min(this.left, buf.length - i);
        this.left -= take;
        i += take;
        if (this.left === 0) this.state = 'data-cr';
        continue;
      }
      const problem = this.state.startsWith('trailer') || this.state === 'end-lf' ? this.trailerByte(b) : this.framingByte(b);
      if (problem) return problem;
      i++;
    }
    return { consumed: i, done: this.state === 'done' };
  }

  /** One byte of a size line or of the CRLF after chunk data. */
  private framingByte(b: number): ChunkedFeed | null {
    switch (this.state) {
      case 'size': {
        const v = hexValue(b);
        if (v >= 0) {
          if (++this.digits > MAX_SIZE_DIGITS) return fail('chunk-size-too-large', `chunk size longer than ${MAX_SIZE_DIGITS} hex digits`);
          this.size = this.size * 16 + v;
          if (this.size > MAX_CHUNK_SIZE) return fail('chunk-size-too-large', `chunk larger than ${MAX_CHUNK_SIZE} bytes`);
        } else if (this.digits > 0 && (b === 0x3b || b === 0x20 || b === 0x09)) this.state = 'ext';
        else if (this.digits > 0 && b === 0x0d) this.state = 'size-lf';
        else return fail('chunk-size', 'invalid chunk size');
        return null;
      }
      case 'ext':
        if (b === 0x0d) this.state = 'size-lf';
        else if (b === 0x0a || (b < 0x20 && b !== 0x09) || b === 0x7f) return fail('chunk-extension', 'invalid chunk extension');
        else if (++this.extension > MAX_EXTENSION_BYTES) return fail('chunk-extension', `chunk extensions longer than ${MAX_EXTENSION_BYTES} bytes`);
        return null;
      case 'size-lf':
        if (b !== 0x0a) return fail('line-ending', 'chunk size line must end with CRLF');
        if (this.size === 0) this.state = 'trailer-start';
        else {
          this.left = this.size;
          this.state = 'data';
        }
        return null;
      case 'data-cr':
        if (b !== 0x0d) return fail('line-ending', 'chunk data must end with CRLF');
        this.state = 'data-lf';
        return null;
      default: // 'data-lf'
        if (b !== 0x0a) return fail('line-ending', 'chunk data must end with CRLF');
        this.state = 'size';
        this.size = 0;
        this.digits = 0;
        this.extension = 0;
        return null;
    }
  }

  /** One byte of the trailer section: field lines, each checked when its CRLF arrives, then CRLF. */
  private trailerByte(b: number): ChunkedFeed | null {
    if (this.state !== 'end-lf' && ++this.trailerBytes > MAX_TRAILER_BYTES) return fail('trailer-too-large', `trailer section larger than ${MAX_TRAILER_BYTES} bytes`);
    switch (this.state) {
      case 'trailer-start':
        if (b === 0x0d) this.state = 'end-lf';
        else if (b === 0x0a) return fail('line-ending', 'trailer lines must end with CRLF');
        else {
          this.trailerLine = String.fromCharCode(b);
          this.state = 'trailer';
        }
        return null;
      case 'trailer':
        if (b === 0x0d) this.state = 'trailer-lf';
        else if (b === 0x0a) return fail('line-ending', 'trailer lines must end with CRLF');
        else this.trailerLine += String.fromCharCode(b);
        return null;
      case 'trailer-lf': {
        if (b !== 0x0a) return fail('line-ending', 'trailer lines must end with CRLF');
        const problem = trailerFieldProblem(this.trailerLine);
        if (problem !== null) return fail('trailer-field', problem);
        if (++this.trailerFields > MAX_TRAILER_FIELDS) return fail('trailer-too-large', `more than ${MAX_TRAILER_FIELDS} trailer fields`);
        this.trailerLine = '';
        this.state = 'trailer-start';
        return null;
      }
      default: // 'end-lf'
        if (b !== 0x0a) return fail('line-ending', 'chunked body must end with CRLF');
        this.state = 'done';
        return null;
    }
  }
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  return -1;
}
