// SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929): the client's three
// messages — greeting, credentials, request — each read from chunks as they arrive, and the
// server's answers. Every message is bounded by its own format (at most 513 bytes), so a reader
// needs no size limit of its own; the caller bounds the time. Pure.
import { addressFromBytes, formatAddress, parseAddress } from '../net/address.js';
import type { ProxyErrorKind } from './responses.js';
import { parseHost } from './target.js';

export const SOCKS5 = 0x05;
export const SOCKS4 = 0x04;

/** Authentication methods (RFC 1928 §3). */
export const METHOD_NO_AUTH = 0x00;
export const METHOD_USERNAME_PASSWORD = 0x02;
export const METHOD_NONE_ACCEPTABLE = 0xff;

/** Request commands (RFC 1928 §4). */
export const COMMAND_CONNECT = 0x01;
export const COMMAND_BIND = 0x02;
export const COMMAND_UDP_ASSOCIATE = 0x03;

/** Reply codes (RFC 1928 §6). */
export const REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;
const AUTH_VERSION = 0x01;

/** One message read: incomplete until its last byte is in, then its fields and its length. */
export type MessageParse<T> =
  | { status: 'incomplete' }
  | { status: 'error'; message: string; reply: number }
  | { status: 'ok'; message: T; length: number };

export interface Greeting {
  methods: number[];
}

export interface SocksRequest {
  command: number;
  /** Canonical, as a CONNECT host is. */
  host: string;
  port: number;
  /** True when host is an IP literal (IPv4/IPv6 address types, or a name that spells an address). */
  ip: boolean;
}

const INCOMPLETE = { status: 'incomplete' } as const;

function fail(message: string, reply: number = REPLY.generalFailure): { status: 'error'; message: string; reply: number } {
  return { status: 'error', message, reply };
}

/** VER NMETHODS METHODS… */
export function parseGreeting(buf: Buffer): MessageParse<Greeting> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== SOCKS5) return fail(`not a SOCKS5 greeting (version byte ${buf[0]})`);
  if (buf.length < 2) return INCOMPLETE;
  const count = buf[1]!;
  if (count === 0) return fail('the SOCKS5 greeting offers no authentication method');
  if (buf.length < 2 + count) return INCOMPLETE;
  return { status: 'ok', message: { methods: [...buf.subarray(2, 2 + count)] }, length: 2 + count };
}

/** VER ULEN UNAME PLEN PASSWD: only the framing is read; the credentials are never taken out. */
export function parseCredentials(buf: Buffer): MessageParse<Record<string, never>> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== AUTH_VERSION) return fail(`not a username/password sub-negotiation (version byte ${buf[0]})`);
  if (buf.length < 2) return INCOMPLETE;
  const passwordLengthAt = 2 + buf[1]!;
  if (buf.length <= passwordLengthAt) return INCOMPLETE;
  const length = passwordLengthAt + 1 + buf[passwordLengthAt]!;
  if (buf.length < length) return INCOMPLETE;
  return { status: 'ok', message: {}, length };
}

/** The address's length in bytes after ATYP, or null for an unknown address type. */
function addressLength(buf: Buffer, atyp: number): number | null | 'incomplete' {
  if (atyp === ATYP_IPV4) return 4;
  if (atyp === ATYP_IPV6) return 16;
  if (atyp !== ATYP_DOMAIN) return null;
  if (buf.length < 5) return 'incomplete';
  return 1 + buf[4]!;
}

/** VER CMD RSV ATYP DST.ADDR DST.PORT */
export function parseRequest(buf: Buffer): MessageParse<SocksRequest> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== SOCKS5) return fail(`not a SOCKS5 request (version byte ${buf[0]})`);
  if (buf.length < 4) return INCOMPLETE;
  if (buf[2] !== 0) return fail(`the reserved byte of a SOCKS5 request must be 0, got ${buf[2]}`);
  const atyp = buf[3]!;
  const addressBytes = addressLength(buf, atyp);
  if (addressBytes === 'incomplete') return INCOMPLETE;
  if (addressBytes === null) return fail(`unknown SOCKS5 address type ${atyp}`, REPLY.addressTypeNotSupported);
  const length = 4 + addressBytes + 2;
  if (buf.length < length) return INCOMPLETE;
  const port = buf.readUInt16BE(4 + addressBytes);
  if (port === 0) return fail('port 0 is not a destination');
  const target = readAddress(buf.subarray(4, 4 + addressBytes), atyp);
  if (!target.ok) return fail(target.message);
  return { status: 'ok', message: { command: buf[1]!, host: target.host, port, ip: target.ip }, length };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function readAddress(bytes: Buffer, atyp: number): { ok: true; host: string; ip: boolean } | { ok: false; message: string } {
  if (atyp !== ATYP_DOMAIN) return { ok: true, host: formatAddress(addressFromBytes([...bytes])), ip: true };
  if (bytes.length === 1) return { ok: false, message: 'empty host name' };
  let name: string;
  try {
    name = UTF8.decode(bytes.subarray(1));
  } catch {
    return { ok: false, message: 'the host name is not valid UTF-8' };
  }
  // A name is taken as a CONNECT host is: canonical, and an address spelled as a name is that address.
  const host = parseHost(name);
  return host.ok ? host : { ok: false, message: host.message };
}

/**
 * Reads one message from chunks as they arrive; `received()` holds whatever came after it
 * (a client may send its next message, or its first tunnel bytes, without waiting).
 */
export class SocksMessageReader<T> {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly parse: (buf: Buffer) => MessageParse<T>) {}

  feed(chunk: Buffer): MessageParse<T> {
    // Messages are a few hundred bytes at most: joining them costs nothing worth a cursor.
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    return this.parse(this.buffered);
  }

  received(): Buffer {
    return this.buffered;
  }
}

/** The method the server picks: no authentication when offered, else username/password (whose credentials are ignored). */
export function chooseMethod(offered: number[]): number {
  if (offered.includes(METHOD_NO_AUTH)) return METHOD_NO_AUTH;
  if (offered.includes(METHOD_USERNAME_PASSWORD)) return METHOD_USERNAME_PASSWORD;
  return METHOD_NONE_ACCEPTABLE;
}

export function methodSelection(method: number): Buffer {
  return Buffer.from([SOCKS5, method]);
}

/** The sub-negotiation's answers: any credentials are accepted (status 0); only a malformed message fails. */
export const CREDENTIALS_ACCEPTED = Buffer.from([AUTH_VERSION, 0x00]);
export const CREDENTIALS_MALFORMED = Buffer.from([AUTH_VERSION, 0x01]);

/** VER REP RSV ATYP BND.ADDR BND.PORT; the bound address when one is known, else 0.0.0.0:0. */
export function socksReply(code: number, bound?: { address: string; port: number }): Buffer {
  const ip = bound ? parseAddress(bound.address) : null;
  if (bound && ip) {
    const atyp = ip.kind() === 'ipv4' ? ATYP_IPV4 : ATYP_IPV6;
    return Buffer.from([SOCKS5, code, 0, atyp, ...ip.toByteArray(), bound.port >> 8, bound.port & 0xff]);
  }
  return Buffer.from([SOCKS5, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** SOCKS4's "request rejected or failed" (VN 0, CD 91): the one answer a SOCKS4 client gets. */
export const SOCKS4_REJECTED = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]);

/** The reply code that tells a SOCKS5 client why the proxy refused or could not connect. */
export function replyCodeFor(refusal: { kind: ProxyErrorKind; detail: string }): number {
  switch (refusal.kind) {
    case 'policy_denied':
    case 'ssrf_denied':
    case 'integrity_violation':
    case 'inspection_unavailable':
      return REPLY.notAllowed;
    case 'dns_failed':
      return REPLY.hostUnreachable;
    case 'upstream_timeout':
      return REPLY.ttlExpired;
    case 'upstream_unreachable':
      // The dial's detail ends with the socket error's code.
      if (/\bECONNREFUSED\b/.test(refusal.detail)) return REPLY.connectionRefused;
      if (/\bENETUNREACH\b/.test(refusal.detail)) return REPLY.networkUnreachable;
      if (/\bEHOSTUNREACH\b|\bEHOSTDOWN\b|no address to dial/.test(refusal.detail)) return REPLY.hostUnreachable;
      return REPLY.generalFailure;
    case 'not_implemented':
      return REPLY.commandNotSupported;
    default:
      return REPLY.generalFailure;
  }
}
