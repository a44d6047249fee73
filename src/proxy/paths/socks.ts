// SOCKS5 on the listen port (first byte 0x05): an RFC 1928 CONNECT, decided as an HTTP CONNECT is:
//   1. the greeting picks the method: no authentication, or username/password (RFC 1929; the
//      credentials are accepted unread: who is calling is the process, not a name it gives);
//      neither offered → 0xFF and close;
//   2. the request: CONNECT to an IPv4 or IPv6 address or a name (canonical, as a CONNECT host);
//      BIND, UDP ASSOCIATE and anything else → reply 0x07;
//   3. identity, decision, dial exactly the checked addresses; a refusal is answered with its
//      reply code (socks-messages.ts replyCodeFor) and its reason goes to the audit log; a
//      connection the policy wants TLS-inspected is refused (a SOCKS tunnel is relayed opaque);
//   4. reply 0x00 with the upstream socket's address, then an opaque tunnel, tracked until it ends.
// Nothing the client sends goes upstream before step 4. SOCKS4 (first byte 0x04) is refused.
import type net from 'node:net';
import type { Decision } from '../../policy/types.js';
import type { Refuse } from '../answers.js';
import type { RequestFacts } from '../authorise.js';
import { callerFields, peerOf } from '../caller.js';
import { Downstream } from '../downstream.js';
import type { Allowed, Pipeline } from '../pipeline.js';
import { readHead } from '../read-head.js';
import {
  chooseMethod,
  COMMAND_BIND,
  COMMAND_CONNECT,
  COMMAND_UDP_ASSOCIATE,
  CREDENTIALS_ACCEPTED,
  CREDENTIALS_MALFORMED,
  METHOD_NO_AUTH,
  METHOD_NONE_ACCEPTABLE,
  methodSelection,
  parseCredentials,
  parseGreeting,
  parseRequest,
  replyCodeFor,
  REPLY,
  SocksMessageReader,
  socksReply,
  SOCKS4_REJECTED,
  type MessageParse,
  type SocksRequest,
} from '../socks-messages.js';

/** A refusal on the SOCKS path: the reply code that says why, then close. */
const refuseSocks: Refuse = (client, refusal) => endWith(client, socksReply(replyCodeFor(refusal)));

/** Reads the greeting (its first bytes are `first`), then the credentials if asked for, then the request, all by `deadline`. */
export function acceptSocks5(p: Pipeline, client: net.Socket, first: Buffer, deadline: number): void {
  readMessage(p, client, parseGreeting, () => methodSelection(METHOD_NONE_ACCEPTABLE), deadline, first, (greeting, rest) => {
    const method = chooseMethod(greeting.methods);
    if (method === METHOD_NONE_ACCEPTABLE) {
      const offered = greeting.methods.map((m) => `0x${m.toString(16).padStart(2, '0')}`).join(', ');
      return refuseMessage(p, client, methodSelection(method), `no authentication method the proxy accepts was offered (${offered}; it accepts 0x00 and 0x02)`);
    }
    write(client, methodSelection(method));
    const readRequest = (after: Buffer): void =>
      readMessage(p, client, parseRequest, (code) => socksReply(code), deadline, after, (request, tunnelBytes) => {
        connect(p, client, request, tunnelBytes).catch((err: unknown) => {
          p.error({ kind: 'error', error: 'internal', detail: (err as Error).message });
          client.destroy();
        });
      });
    if (method === METHOD_NO_AUTH) return readRequest(rest);
    // Username/password: whatever is given is accepted, and never read out of the message.
    readMessage(p, client, parseCredentials, () => CREDENTIALS_MALFORMED, deadline, rest, (_credentials, after) => {
      write(client, CREDENTIALS_ACCEPTED);
      readRequest(after);
    });
  });
}

/** SOCKS4 and 4a: the SOCKS4 "request rejected" reply and close, audited as a bad request. */
export function acceptSocks4(p: Pipeline, client: net.Socket): void {
  refuseMessage(p, client, SOCKS4_REJECTED, 'SOCKS4 is not supported: use SOCKS5 (e.g. socks5h://) on this port');
}

async function connect(p: Pipeline, client: net.Socket, request: SocksRequest, rest: Buffer): Promise<void> {
  if (request.command !== COMMAND_CONNECT) {
    const reason = `SOCKS5 ${commandName(request.command)} is not supported: only CONNECT`;
    return refuseMessage(p, client, socksReply(REPLY.commandNotSupported), reason, 'not_implemented', request);
  }
  const facts: RequestFacts = { host: request.host, port: request.port, ip: request.ip };
  // A tunnel reads the upstream into buffers of its own (downstream.ts); the dial may start
  // beside the identity lookup (early-dial.ts).
  const downstream = new Downstream();
  const early = p.dialEarly(facts, downstream);
  const identity = await p.identify(client, false);
  const allowed = await p.decide('socks', client, identity, facts, refuseSocks, early);
  if (!allowed) return;
  const uninspectable = socksInspectionRefusal(allowed.decision, facts);
  if (uninspectable) return refuseUninspectable(p, allowed, uninspectable);
  const dialed = await p.dial(allowed, downstream);
  if (!dialed) return;
  const { localAddress, localPort } = dialed.upstream;
  client.write(socksReply(REPLY.succeeded, localAddress && localPort ? { address: localAddress, port: localPort } : undefined));
  if (rest.length > 0) dialed.upstream.write(rest);
  p.tunnels.relay(client, dialed);
  client.resume();
}

/**
 * A SOCKS tunnel is relayed opaque, so a policy that wants the connection TLS-inspected (its
 * method and path rules decided) cannot be met over SOCKS, whether or not the proxy could inspect
 * a CONNECT: refused, as the opaque CONNECT path refuses it. Null when the decision stands.
 */
export function socksInspectionRefusal(decision: Decision, facts: RequestFacts): Decision | null {
  if (!decision.allow || decision.inspect !== true) return null;
  const reason = `${facts.host}:${facts.port} is allowed (policy ${decision.policy ?? '?'}) only TLS-inspected (tls: inspect, the default for protocol: rest), and a SOCKS5 tunnel is relayed opaque: reach it over HTTPS_PROXY (CONNECT) instead`;
  return { allow: false, decision: 'deny', reason, policy: decision.policy };
}

/** An allowed decision the SOCKS path cannot honour: audited as the deny it is, answered 0x02. */
function refuseUninspectable(p: Pipeline, allowed: Allowed, decision: Decision): void {
  const { event, client } = allowed;
  Object.assign(event, decision, { error: 'inspection_unavailable' });
  p.error(event);
  refuseSocks(client, { kind: 'inspection_unavailable', detail: decision.reason });
}

function commandName(command: number): string {
  if (command === COMMAND_BIND) return 'BIND';
  if (command === COMMAND_UDP_ASSOCIATE) return 'UDP ASSOCIATE';
  return `command 0x${command.toString(16).padStart(2, '0')}`;
}

/**
 * Reads one message from `first` and what follows by `deadline`; a malformed one is answered
 * with `answerError(its reply code)` and refused, a late one refused by closing.
 */
function readMessage<T>(
  p: Pipeline,
  client: net.Socket,
  parse: (buf: Buffer) => MessageParse<T>,
  answerError: (code: number) => Buffer,
  deadline: number,
  first: Buffer,
  then: (message: T, rest: Buffer) => void,
): void {
  const reader = new SocksMessageReader(parse);
  const timedOut = (): void => refuseMessage(p, client, null, `the SOCKS5 handshake did not complete within ${p.limits.headerTimeoutMs} ms`, 'header_timeout');
  readHead(
    client,
    reader,
    deadline,
    timedOut,
    (answer) => {
      if (answer.status === 'error') return refuseMessage(p, client, answerError(answer.reply), `malformed SOCKS5 message: ${answer.message}`);
      then(answer.message, reader.received().subarray(answer.length));
    },
    first,
  );
}

/**
 * A connection refused before any decision: audited as a denied `socks` event with who sent
 * it (looked up while the socket row still exists), then `answer` (if any) and close.
 */
function refuseMessage(p: Pipeline, client: net.Socket, answer: Buffer | null, reason: string, error = 'bad_request', target?: SocksRequest): void {
  const peer = peerOf(client);
  void p.identify(client, false).then((identity) => {
    if (answer) endWith(client, answer);
    else client.destroy();
    p.error({
      kind: 'socks',
      allow: false,
      decision: 'deny',
      reason,
      policy: null,
      host: target?.host ?? null,
      port: target?.port ?? null,
      ...callerFields(identity),
      client: peer,
      error,
    });
  });
}

function write(client: net.Socket, bytes: Buffer): void {
  if (client.writable) client.write(bytes);
}

/** Writes the last answer and closes; what the client still sends is read and dropped. */
function endWith(client: net.Socket, answer: Buffer): void {
  if (client.writable) client.end(answer);
  client.resume();
  client.setTimeout(5_000, () => client.destroy());
}
