// Finds where a chunked request body ends (RFC 9112 §7.1), fed the bytes as they arrive, so the
// proxy forwards exactly the body and nothing after it. Pure and incremental; strict about
// CRLF and chunk-size syntax.

type State = 'size' | 'ext' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer-start' | 'trailer' | 'trailer-lf' | 'end-lf' | 'done';

export type ChunkedFeed = { consumed: number; done: boolean } | { error: string };

const MAX_SIZE_DIGITS = 15;

export class ChunkedBodyScanner {
  private state: State = 'size';
  private size = 0;
  private digits = 0;
  private left = 0;

  /** Consumes from `buf` up to the end of the body; `consumed` bytes belong to the body. */
  feed(buf: Buffer): ChunkedFeed {
    let i = 0;
    while (i < buf.length && this.state !== 'done') {
      const b = buf[i]!;
      switch (this.state) {
        case 'size': {
          const v = hexValue(b);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return { error: 'chunk size too large' };
            this.size = this.size * 16 + v;
          } else if (this.digits > 0 && (b === 0x3b || b === 0x20 || b === 0x09)) this.state = 'ext';
          else if (this.digits > 0 && b === 0x0d) this.state = 'size-lf';
          else return { error: 'invalid chunk size' };
          break;
        }
        case 'ext':
          if (b === 0x0d) this.state = 'size-lf';
          else if (b === 0x0a || (b < 0x20 && b !== 0x09) || b === 0x7f) return { error: 'invalid chunk extension' };
          break;
        case 'size-lf':
          if (b !== 0x0a) return { error: 'chunk size line must end with CRLF' };
          if (this.size === 0) this.state = 'trailer-start';
          else {
            this.left = this.size;
            this.state = 'data';
          }
          break;
        case 'data': {
          const take = Math.min(this.left, buf.length - i);
          this.left -= take;
          i += take - 1;
          if (this.left === 0) this.state = 'data-cr';
          break;
        }
        case 'data-cr':
          if (b !== 0x0d) return { error: 'chunk data must end with CRLF' };
          this.state = 'data-lf';
          break;
        case 'data-lf':
          if (b !== 0x0a) return { error: 'chunk data must end with CRLF' };
          this.state = 'size';
          this.size = 0;
          this.digits = 0;
          break;
        case 'trailer-start':
          if (b === 0x0d) this.state = 'end-lf';
          else if (b === 0x0a) return { error: 'trailer lines must end with CRLF' };
          else this.state = 'trailer';
          break;
        case 'trailer':
          if (b === 0x0d) this.state = 'trailer-lf';
          else if (b === 0x0a) return { error: 'trailer lines must end with CRLF' };
          break;
        case 'trailer-lf':
          if (b !== 0x0a) return { error: 'trailer lines must end with CRLF' };
          this.state = 'trailer-start';
          break;
        case 'end-lf':
          if (b !== 0x0a) return { error: 'chunked body must end with CRLF' };
          this.state = 'done';
          break;
      }
      i++;
    }
    return { consumed: i, done: this.state === 'done' };
  }
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  return -1;
}
