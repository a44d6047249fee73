// DNS wire format for the proxy's own decisions. Pure.
//
// Queries are parsed here by hand, strictly, rather than with a general decoder: a query must
// be one plain question (no compression pointers, no answer or authority records, at most one
// EDNS OPT record), and anything else is answered FORMERR or dropped. The query sent upstream
// is rebuilt from the question alone, so nothing a client smuggles into other sections or EDNS
// options leaves the sandbox.

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

const HEADER = 12;
const QR = 0x8000;
const OPCODE_MASK = 0x7800;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;
const TYPE_OPT = 41;
const MAX_NAME_WIRE = 255;
/** EDNS payload sizes offered upstream: never below the classic 512, never above 4096. */
const MIN_UDP_PAYLOAD = 512;
const MAX_UDP_PAYLOAD = 4096;

export const QTYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV',
  35: 'NAPTR', 43: 'DS', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF', 255: 'ANY', 257: 'CAA',
};

export function qtypeName(type: number): string {
  return QTYPE_NAMES[type] ?? `TYPE${type}`;
}

export interface ParsedQuery {
  id: number;
  flags: number;
  /** The name as sent (case kept), dot-separated, no trailing dot; "" for the root. */
  name: string;
  qtype: number;
  qclass: number;
  /** Question section bytes (name, type, class) exactly as sent. */
  question: Buffer;
  /** EDNS: the client's UDP payload size and DO bit, when it sent an OPT record. */
  edns: { udpPayload: number; dnssecOk: boolean } | null;
}

export type QueryParse =
  | { ok: true; query: ParsedQuery }
  /** A header could be read: answer with this rcode (FORMERR, NOTIMP). */
  | { ok: false; reply: { id: number; flags: number; rcode: Rcode; question: Buffer | null }; why: string }
  /** Not even a query header: say nothing. */
  | { ok: false; reply: null; why: string };

interface NameRead {
  name: string;
  end: number;
}

/** Reads an uncompressed name; null when it is malformed, compressed or too long. */
function readPlainName(buf: Buffer, start: number): NameRead | null {
  const labels: string[] = [];
  let at = start;
  for (;;) {
    if (at >= buf.length) return null;
    const len = buf[at]!;
    if (len === 0) {
      at++;
      break;
    }
    if (len > 63) return null; // compression pointer or reserved label type
    if (at + 1 + len > buf.length) return null;
    labels.push(buf.toString('latin1', at + 1, at + 1 + len));
    at += 1 + len;
    if (at - start > MAX_NAME_WIRE) return null;
  }
  if (at - start > MAX_NAME_WIRE) return null;
  return { name: labels.join('.'), end: at };
}

/** Parses a client's query (see the module comment for what is accepted). */
export function parseQuery(buf: Buffer): QueryParse {
  if (buf.length < HEADER) return { ok: false, reply: null, why: 'shorter than a DNS header' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if ((flags & QR) !== 0) return { ok: false, reply: null, why: 'a response, not a query' };
  const qdcount = buf.readUInt16BE(4);
  const ancount = buf.readUInt16BE(6);
  const nscount = buf.readUInt16BE(8);
  const arcount = buf.readUInt16BE(10);
  const formerr = (why: string, question: Buffer | null = null): QueryParse => ({
    ok: false,
    reply: { id, flags, rcode: RCODE.FORMERR, question },
    why,
  });
  if ((flags & OPCODE_MASK) !== 0) return { ok: false, reply: { id, flags, rcode: RCODE.NOTIMP, question: null }, why: 'opcode is not QUERY' };
  if (qdcount !== 1) return formerr(`${qdcount} questions (exactly one is accepted)`);
  if (ancount !== 0 || nscount !== 0) return formerr('a query with answer or authority records');
  if (arcount > 1) return formerr('more than one additional record');
  const name = readPlainName(buf, HEADER);
  if (name === null || name.end + 4 > buf.length) return formerr('malformed question');
  const qtype = buf.readUInt16BE(name.end);
  const qclass = buf.readUInt16BE(name.end + 2);
  const question = Buffer.from(buf.subarray(HEADER, name.end + 4));
  let at = name.end + 4;
  let edns: ParsedQuery['edns'] = null;
  if (arcount === 1) {
    // The only additional record accepted is EDNS OPT: root owner, type 41.
    if (at + 11 > buf.length || buf[at] !== 0 || buf.readUInt16BE(at + 1) !== TYPE_OPT) return formerr('additional record is not EDNS OPT', question);
    const udpPayload = buf.readUInt16BE(at + 3);
    const ttl = buf.readUInt32BE(at + 5);
    const rdlength = buf.readUInt16BE(at + 9);
    if (at + 11 + rdlength > buf.length) return formerr('truncated EDNS OPT record', question);
    edns = { udpPayload, dnssecOk: (ttl & 0x8000) !== 0 };
    at += 11 + rdlength;
  }
  if (at !== buf.length) return formerr('trailing bytes after the query', question);
  return { ok: true, query: { id, flags, name: name.name, qtype, qclass, question, edns } };
}

/** The query sent upstream: a fresh header, the client's question, and EDNS if it asked. */
export function buildUpstreamQuery(query: ParsedQuery, id: number, transport: 'udp' | 'tcp'): Buffer {
  const withOpt = query.edns !== null;
  const out = Buffer.alloc(HEADER + query.question.length + (withOpt ? 11 : 0));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(query.flags & (RD | CD), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(withOpt ? 1 : 0, 10);
  query.question.copy(out, HEADER);
  if (withOpt) {
    const at = HEADER + query.question.length;
    const wanted = transport === 'tcp' ? MAX_UDP_PAYLOAD : query.edns!.udpPayload;
    out[at] = 0;
    out.writeUInt16BE(TYPE_OPT, at + 1);
    out.writeUInt16BE(Math.min(MAX_UDP_PAYLOAD, Math.max(MIN_UDP_PAYLOAD, wanted)), at + 3);
    out.writeUInt32BE(query.edns!.dnssecOk ? 0x8000 : 0, at + 5);
    out.writeUInt16BE(0, at + 9);
  }
  return out;
}

/** A response the proxy makes itself: header and (when known) the question, no records. */
export function buildReply(id: number, queryFlags: number, rcode: Rcode, question: Buffer | null): Buffer {
  const out = Buffer.alloc(HEADER + (question?.length ?? 0));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(QR | (queryFlags & (OPCODE_MASK | RD | CD)) | RA | rcode, 2);
  out.writeUInt16BE(question ? 1 : 0, 4);
  question?.copy(out, HEADER);
  return out;
}

/**
 * Checks an upstream response against the query it answers: a response, the same question
 * (names compared case-insensitively). Returns its rcode, or null when it does not belong.
 */
export function matchResponse(buf: Buffer, question: Buffer): { rcode: number; truncated: boolean } | null {
  if (buf.length < HEADER + question.length) return null;
  const flags = buf.readUInt16BE(2);
  if ((flags & QR) === 0 || buf.readUInt16BE(4) !== 1) return null;
  const nameEnd = question.length - 4;
  for (let i = 0; i < question.length; i++) {
    const a = buf[HEADER + i]!;
    const b = question[i]!;
    // Label bytes compare without case; length bytes (< 64) and type/class bytes exactly.
    if (a !== b && (i >= nameEnd || lowerAscii(a) !== lowerAscii(b))) return null;
  }
  return { rcode: flags & 0x000f, truncated: (flags & 0x0200) !== 0 };
}

function lowerAscii(byte: number): number {
  return byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte;
}

/** Gives a response another message id (the client's), in place. */
export function withId(buf: Buffer, id: number): Buffer {
  buf.writeUInt16BE(id, 0);
  return buf;
}

/** A message as DNS over TCP sends it: a two-byte big-endian length, then the message. Pure. */
export function tcpFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length);
  return Buffer.concat([prefix, message]);
}
