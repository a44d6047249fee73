// TLS ClientHello reader for the transparent (SNI) listener: takes the server name out of the
// first handshake message, which may span several TLS records. Pure; fed the bytes received
// so far and bounded by `maxBytes`.
import { parseHost } from './target.js';

export type HelloParse =
  | { status: 'incomplete' }
  | { status: 'error'; message: string }
  | { status: 'ok'; serverName: string | null; length: number };

const RECORD_HEADER = 5;
const MAX_RECORD = 16384 + 2048;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;

/** Reassembles the handshake bytes from the records that carry them. */
function handshakeBytes(buffer: Buffer, maxBytes: number): { bytes: Buffer; consumed: number; complete: boolean } | { error: string } {
  const pieces: Buffer[] = [];
  let offset = 0;
  let collected = 0;
  let needed = -1;
  while (offset + RECORD_HEADER <= buffer.length) {
    const type = buffer[offset]!;
    if (type !== 22) return { error: 'not a TLS handshake record' };
    if (buffer[offset + 1] !== 3) return { error: 'not a TLS record version' };
    const length = buffer.readUInt16BE(offset + 3);
    if (length === 0 || length > MAX_RECORD) return { error: 'invalid TLS record length' };
    if (offset + RECORD_HEADER + length > maxBytes) return { error: `ClientHello larger than ${maxBytes} bytes` };
    if (offset + RECORD_HEADER + length > buffer.length) break;
    const fragment = buffer.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length);
    pieces.push(fragment);
    collected += fragment.length;
    offset += RECORD_HEADER + length;
    if (needed === -1 && collected >= 4) {
      const head = Buffer.concat(pieces);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return { error: 'first handshake message is not a ClientHello' };
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > maxBytes) return { error: `ClientHello larger than ${maxBytes} bytes` };
    }
    if (needed !== -1 && collected >= needed) return { bytes: Buffer.concat(pieces).subarray(0, needed), consumed: offset, complete: true };
  }
  if (buffer.length >= maxBytes) return { error: `ClientHello larger than ${maxBytes} bytes` };
  if (buffer.length >= 1 && buffer[0] !== 22) return { error: 'not a TLS handshake record' };
  return { bytes: Buffer.alloc(0), consumed: offset, complete: false };
}

export function parseClientHello(buffer: Buffer, maxBytes = 65536): HelloParse {
  const hs = handshakeBytes(buffer, maxBytes);
  if ('error' in hs) return { status: 'error', message: hs.error };
  if (!hs.complete) return { status: 'incomplete' };
  const result = readServerName(hs.bytes);
  if (result !== null && typeof result === 'object') return { status: 'error', message: result.error };
  return { status: 'ok', serverName: result, length: hs.consumed };
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
