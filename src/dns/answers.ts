// The addresses an upstream response hands out. Pure.
//
// A small walker over the wire format rather than a full decode: the proxy reads every
// response it forwards, so this is on the hot path. Every offset is bounds-checked; a message
// that does not parse throws.
import { addressFromBytes, formatAddress } from '../net/address.js';

export interface AnsweredAddress {
  family: 4 | 6;
  /** Canonical text form (src/net/address.ts). */
  address: string;
  ttl: number;
}

export class AnswerParseError extends Error {
  override name = 'AnswerParseError';
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;

/** Offset just past a (possibly compressed) name starting at `at`. */
function skipName(buf: Buffer, at: number): number {
  for (let labels = 0; labels < 128; labels++) {
    if (at >= buf.length) throw new AnswerParseError('name runs past the end of the message');
    const len = buf[at]!;
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) {
      if (at + 2 > buf.length) throw new AnswerParseError('truncated compression pointer');
      return at + 2; // the name continues elsewhere; this record's bytes end here
    }
    if ((len & 0xc0) !== 0) throw new AnswerParseError('reserved label type');
    at += 1 + len;
  }
  throw new AnswerParseError('too many labels');
}

/**
 * A and AAAA records of the answer section (class IN), in order. Every address record of the
 * answer counts, whatever its owner name: behind a CNAME chain the client connects to these
 * addresses believing they are the name it asked for.
 */
export function answeredAddresses(message: Buffer): AnsweredAddress[] {
  if (message.length < 12) throw new AnswerParseError('shorter than a DNS header');
  const qdcount = message.readUInt16BE(4);
  const ancount = message.readUInt16BE(6);
  let at = 12;
  for (let i = 0; i < qdcount; i++) {
    at = skipName(message, at) + 4;
    if (at > message.length) throw new AnswerParseError('truncated question');
  }
  const out: AnsweredAddress[] = [];
  for (let i = 0; i < ancount; i++) {
    at = skipName(message, at);
    if (at + 10 > message.length) throw new AnswerParseError('truncated record header');
    const type = message.readUInt16BE(at);
    const klass = message.readUInt16BE(at + 2);
    const ttl = message.readUInt32BE(at + 4);
    const rdlength = message.readUInt16BE(at + 8);
    at += 10;
    if (at + rdlength > message.length) throw new AnswerParseError('truncated record data');
    if (klass === CLASS_IN && type === TYPE_A && rdlength === 4) {
      out.push({ family: 4, address: `${message[at]}.${message[at + 1]}.${message[at + 2]}.${message[at + 3]}`, ttl: ttlValue(ttl) });
    } else if (klass === CLASS_IN && type === TYPE_AAAA && rdlength === 16) {
      out.push({ family: 6, address: formatAddress(addressFromBytes([...message.subarray(at, at + 16)])), ttl: ttlValue(ttl) });
    }
    at += rdlength;
  }
  return out;
}

/** RFC 2181: a TTL with the top bit set is treated as zero. */
function ttlValue(ttl: number): number {
  return ttl > 0x7fffffff ? 0 : ttl;
}
