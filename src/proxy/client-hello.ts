// TLS ClientHello reader for the transparent (SNI) listener: takes the server name out of the
// first handshake message, which may span several TLS records. Pure (no I/O): fed chunks as
// they arrive, bounded by `maxBytes`.
import { parseHost } from './target.js';

export type HelloParse =
  | { status: 'incomplete' }
  | { status: 'error'; message: string }
  | { status: 'ok'; serverName: string | null; length: number };

const RECORD_HEADER = 5;
const MAX_RECORD = 16384 + 2048;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;

/**
 * Reads a ClientHello from chunks as they arrive: record by record, each byte taken once, the
 * hello parsed once when its last record is in. A hello dribbled a byte at a time (or cut into
 * many small records) costs what it costs in one piece.
 */
export class ClientHelloReader {
  /** Bytes taken into records, and hellos parsed: the work done, which must stay linear. */
  taken = 0;
  parses = 0;
  private readonly chunks: Buffer[] = [];
  private total = 0;
  /** Received bytes not yet taken into a record: pending[start..]. */
  private pending: Buffer[] = [];
  private start = 0;
  private pendingLength = 0;
  /** The body length of the record whose header was read, or -1 before its header. */
  private recordLength = -1;
  /** Bytes of whole records taken. */
  private offset = 0;
  private readonly fragments: Buffer[] = [];
  private collected = 0;
  /** The handshake message's length (with its 4-byte header), once known. */
  private needed = -1;
  private firstByte = -1;
  private whole: Buffer | null = null;

  constructor(private readonly maxBytes = 65536) {}

  feed(chunk: Buffer): HelloParse {
    this.chunks.push(chunk);
    this.total += chunk.length;
    this.whole = null;
    if (this.firstByte === -1 && chunk.length > 0) this.firstByte = chunk[0]!;
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    for (;;) {
      if (this.recordLength === -1) {
        if (this.pendingLength < RECORD_HEADER) break;
        const error = this.readRecordHeader(this.take(RECORD_HEADER));
        if (error !== null) return { status: 'error', message: error };
      }
      if (this.pendingLength < this.recordLength) break;
      const error = this.addFragment(this.take(this.recordLength));
      if (error !== null) return { status: 'error', message: error };
      if (this.needed !== -1 && this.collected >= this.needed) return this.parse();
    }
    if (this.total >= this.maxBytes) return { status: 'error', message: `ClientHello larger than ${this.maxBytes} bytes` };
    if (this.firstByte !== -1 && this.firstByte !== 22) return { status: 'error', message: 'not a TLS handshake record' };
    return { status: 'incomplete' };
  }

  /** Everything received so far: the hello's records and whatever came after them. */
  received(): Buffer {
    this.whole ??= this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    return this.whole;
  }

  private readRecordHeader(header: Buffer): string | null {
    if (header[0] !== 22) return 'not a TLS handshake record';
    if (header[1] !== 3) return 'not a TLS record version';
    const length = header.readUInt16BE(3);
    if (length === 0 || length > MAX_RECORD) return 'invalid TLS record length';
    if (this.offset + RECORD_HEADER + length > this.maxBytes) return `ClientHello larger than ${this.maxBytes} bytes`;
    this.recordLength = length;
    return null;
  }

  private addFragment(fragment: Buffer): string | null {
    this.fragments.push(fragment);
    this.collected += fragment.length;
    this.offset += RECORD_HEADER + this.recordLength;
    this.recordLength = -1;
    if (this.needed === -1 && this.collected >= 4) {
      const head = Buffer.concat(this.fragments);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return 'first handshake message is not a ClientHello';
      this.needed = 4 + head.readUIntBE(1, 3);
      if (this.needed > this.maxBytes) return `ClientHello larger than ${this.maxBytes} bytes`;
    }
    return null;
  }

  private parse(): HelloParse {
    this.parses++;
    const hello = (this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.collected)).subarray(0, this.needed);
    const result = readServerName(hello);
    if (result !== null && typeof result === 'object') return { status: 'error', message: result.error };
    return { status: 'ok', serverName: result, length: this.offset };
  }

  /** The next `n` pending bytes (n <= pendingLength), copied only when they span chunks. */
  private take(n: number): Buffer {
    this.taken += n;
    this.pendingLength -= n;
    const first = this.pending[this.start]!;
    if (first.length > n) {
      this.pending[this.start] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.drop();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    for (let filled = 0; filled < n; ) {
      const piece = this.pending[this.start]!;
      const k = Math.min(piece.length, n - filled);
      piece.copy(out, filled, 0, k);
      filled += k;
      if (k === piece.length) this.drop();
      else this.pending[this.start] = piece.subarray(k);
    }
    return out;
  }

  private drop(): void {
    this.start++;
    if (this.start === this.pending.length) {
      this.pending = [];
      this.start = 0;
    }
  }
}

/** Parses a ClientHello held in one buffer (pure). */
export function parseClientHello(buffer: Buffer, maxBytes = 65536): HelloParse {
  return new ClientHelloReader(maxBytes).feed(buffer);
}

/** A bounds-checked reader: every read past the end throws RangeError, caught below. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos = 0,
    private readonly end = buf.length,
  ) {}
  u8(): number {
    if (this.pos + 1 > this.end) throw new RangeError('truncated');
    return this.buf[this.pos++]!;
  }
  u16(): number {
    if (this.pos + 2 > this.end) throw new RangeError('truncated');
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.end) throw new RangeError('truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  sub(n: number): Reader {
    if (this.pos + n > this.end) throw new RangeError('truncated');
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
}

/** The server name, null when the hello has none, or an error. */
function readServerName(hello: Buffer): string | null | { error: string } {
  try {
    const r = new Reader(hello, 4);
    const major = r.u8();
    r.u8();
    if (major !== 3) return { error: 'unsupported ClientHello version' };
    r.bytes(32); // random
    const sessionId = r.u8();
    if (sessionId > 32) return { error: 'session id too long' };
    r.bytes(sessionId);
    const suites = r.u16();
    if (suites < 2 || suites % 2 !== 0) return { error: 'invalid cipher suite list' };
    r.bytes(suites);
    const compression = r.u8();
    if (compression < 1) return { error: 'invalid compression method list' };
    r.bytes(compression);
    if (r.remaining === 0) return null; // no extensions at all
    const extensions = r.sub(r.u16());
    if (r.remaining !== 0) return { error: 'trailing bytes after extensions' };
    const seen = new Set<number>();
    let name: string | null = null;
    while (extensions.remaining > 0) {
      const type = extensions.u16();
      const body = extensions.sub(extensions.u16());
      if (seen.has(type)) return { error: `duplicate extension ${type}` };
      seen.add(type);
      if (type !== EXT_SERVER_NAME) continue;
      const list = body.sub(body.u16());
      if (body.remaining !== 0) return { error: 'malformed server_name extension' };
      while (list.remaining > 0) {
        const nameType = list.u8();
        const value = list.bytes(list.u16());
        if (nameType !== 0) continue;
        if (name !== null) return { error: 'more than one host name in server_name' };
        const text = value.toString('latin1');
        const host = /^[\x21-\x7e]+$/.test(text) ? parseHost(text) : null;
        if (host === null || !host.ok) return { error: 'server_name is not a valid host name' };
        name = host.host;
      }
      if (name === null) return { error: 'server_name extension without a host name' };
    }
    return name;
  } catch (err) {
    if (err instanceof RangeError) return { error: 'truncated ClientHello' };
    throw err;
  }
}
