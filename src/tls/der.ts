// The little DER a leaf certificate needs, written and read by hand: minting through a general
// ASN.1 library cost more than the signature itself (see bench/tls.bench.mjs). Pure.

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: tag byte, DER length, content. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
export const octetString = (content: Buffer): Buffer => tlv(0x04, content);
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'));
export const TRUE = Buffer.from([0x01, 0x01, 0xff]);
export const NULL = Buffer.from([0x05, 0x00]);

/** A BIT STRING with no unused bits. */
export const bitString = (content: Buffer): Buffer => tlv(0x03, Buffer.from([0]), content);

/** A non-negative INTEGER from big-endian bytes (a zero byte added when the top bit is set). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return tlv(0x02, (trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function objectIdentifier(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes = [40 * parts[0]! + parts[1]!];
  for (const part of parts.slice(2)) {
    const chunk = [part & 0x7f];
    for (let v = Math.floor(part / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

const two = (n: number): string => String(n).padStart(2, '0');

/** UTCTime up to 2049, GeneralizedTime after (RFC 5280 4.1.2.5); seconds, UTC. */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest = `${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  return y < 2050 ? tlv(0x17, Buffer.from(`${two(y % 100)}${rest}`)) : tlv(0x18, Buffer.from(`${y}${rest}`));
}

/** Explicitly tagged context-specific constructed [n]. */
export const explicit = (n: number, ...content: Buffer[]): Buffer => tlv(0xa0 | n, ...content);

/** Implicitly tagged context-specific primitive [n] (e.g. a GeneralName). */
export const implicit = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

/** The elements (whole TLVs) inside a constructed TLV that starts at `offset` of `der`. */
export function children(der: Buffer, offset = 0): Buffer[] {
  const read = (at: number): { start: number; end: number } => {
    let len = der[at + 1]!;
    let header = 2;
    if (len & 0x80) {
      const count = len & 0x7f;
      len = 0;
      for (let i = 0; i < count; i++) len = len * 256 + der[at + 2 + i]!;
      header += count;
    }
    return { start: at + header, end: at + header + len };
  };
  const outer = read(offset);
  const out: Buffer[] = [];
  for (let at = outer.start; at < outer.end; ) {
    const inner = read(at);
    out.push(der.subarray(at, inner.end));
    at = inner.end;
  }
  return out;
}
